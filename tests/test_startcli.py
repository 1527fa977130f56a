"""``chasqui start`` / ``chasqui starts`` against a running server, as an operator uses them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.serve import BEARER, Served, free_port, write_toml

FLOW = "nodes:\n  - id: hi\n    send_message: {text: 'hola @contact.name'}\n"


def test_start_sends_a_flow_and_follows_it_to_the_end(tmp_path: Path, valkey_url: str) -> None:
    port = free_port()
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "hi.yaml").write_text(FLOW)
    config = write_toml(
        tmp_path / "config.toml",
        {
            "server": {"port": port, "admin_token": BEARER},
            "redis": {"url": valkey_url},
            "channels": {"console": {"type": "console"}},
        },
    )
    with Served(config, port, tmp_path / "serve.log") as served:
        cli = served.cli
        result = subprocess.run(
            [*cli, "start", "hi", "--urn", "console:ana", "--urn", "console:bruno"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[0].startswith("start ") and lines[0].endswith(" of hi")
        assert "completed" in lines[-1] and "targeted 2, started 2" in lines[-1]
        uuid = lines[0].split()[1]
        listed = subprocess.run([*cli, "starts"], capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0 and uuid in listed.stdout
        bad = subprocess.run(
            [*cli, "start", "nope", "--urn", "console:x"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert bad.returncode == 1 and "error: unknown_flow" in bad.stderr


def test_start_says_when_no_server_answers(tmp_path: Path, valkey_url: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[server]\nport = {free_port()}\nadmin_token = "t"\n')
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bot.cli",
            "--config",
            str(config),
            "start",
            "hi",
            "--urn",
            "console:x",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "is `chasqui serve` running?" in result.stderr
