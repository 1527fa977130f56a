"""``chasqui contacts list|show|history`` and ``chasqui runs``: the services of the admin API,
printed; run against the app's Valkey while its worker runs (the ``api`` fixture)."""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path

import pytest

from bot.cli.main import main as cli_main
from tests.support.api import Api
from tests.support.waiting import wait_for


async def chasqui(api: Api, tmp_path: Path, *argv: str) -> int:
    """``chasqui --config <the app's config> argv...`` in a thread (it runs its own loop)."""
    config = tmp_path / "cli.toml"
    config.write_text(
        f'[redis]\nurl = "{api.runtime.config.redis.url.get_secret_value()}"\n'
        f'[flows]\npath = "{tmp_path / "flows"}"\n'
        '[channels.console]\ntype = "console"\n',
        encoding="utf-8",
    )
    return await asyncio.to_thread(cli_main, ["--config", str(config), *argv])


async def test_contacts_list_show_history_and_runs(
    api: Api, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, ana = await api.post(
        "/api/v1/contacts", {"urn": "console:ana", "name": "Ana Núñez", "groups": ["VIP"]}
    )
    await api.post("/api/v1/contacts", {"urn": "console:anibal", "name": "Aníbal Soto"})
    await api.post(f"/api/v1/contacts/{ana['uuid']}/start", {"flow": "greeting"})

    async def waiting() -> bool:
        _, body = await api.get(f"/api/v1/contacts/{ana['uuid']}/runs")
        return bool(body["runs"]) and body["runs"][0]["status"] == "waiting"

    await wait_for(waiting)
    capsys.readouterr()

    assert await chasqui(api, tmp_path, "contacts", "list", "-s", "nunez") == 0
    out = capsys.readouterr().out
    assert "Ana Núñez" in out and "Aníbal" not in out and "VIP" in out

    assert await chasqui(api, tmp_path, "contacts", "list", "--in-flow") == 0
    out = capsys.readouterr().out
    assert "Ana Núñez" in out and "Aníbal" not in out

    assert await chasqui(api, tmp_path, "contacts", "list", "--group", "Nope") == 2
    err = capsys.readouterr().err
    assert "no group 'Nope'" in err and "the groups are: VIP" in err

    assert await chasqui(api, tmp_path, "contacts", "show", "an") == 2
    err = capsys.readouterr().err
    assert "matches several contacts" in err and "Aníbal Soto" in err

    assert await chasqui(api, tmp_path, "contacts", "show", "console:ana") == 0
    out = capsys.readouterr().out
    assert "groups:   VIP" in out and "greeting" in out and "waiting" in out
    assert "hello > ask" in out

    assert await chasqui(api, tmp_path, "contacts", "history", "ana nu") == 0
    out = capsys.readouterr().out
    assert "greeting: started" in out and "-> Hola Ana" in out

    await api.request(
        "PATCH", f"/api/v1/contacts/{ana['uuid']}", {"fields": {"city": "=HYPERLINK(1)"}}
    )
    assert await chasqui(api, tmp_path, "contacts", "export", "--group", "VIP") == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["uuid", "urn", "name", "language", "status", "groups", "field:city"]
    assert rows[1:] == [
        [ana["uuid"], "console:ana", "Ana Núñez", "", "active", "VIP", "'=HYPERLINK(1)"]
    ]

    assert await chasqui(api, tmp_path, "runs", "--flow", "greeting") == 0
    out = capsys.readouterr().out
    assert "Ana Núñez" in out and "waiting" in out

    assert await chasqui(api, tmp_path, "runs", "--flow", "nope") == 2
    assert "the flows are: greeting" in capsys.readouterr().err
