"""``chasqui flows reload|stats`` and ``chasqui templates show`` against a running server, as an
operator uses them; and what they say when something is off."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.cli.main import main
from tests.support.serve import BEARER, Served, free_port, http_json, write_toml

FLOW = """
nodes:
  - id: hi
    send_message: {text: "hola"}
    next: ask
  - id: ask
    wait_for_reply:
      result: answer
      cases:
        - {has_any_word: [si], category: "Yes", next: bye}
  - id: bye
    send_message: {text: "chao"}
"""
SANDBOX = {
    "type": "whatsapp",
    "graph_url": "sandbox",
    "phone_number_id": "318207746650091",
    "waba_id": "230918475512034",
    "display_phone_number": "15550142200",
    "access_token": "sandbox-token",
    "app_secret": "sandbox-app-secret",
    "verify_token": "sandbox-verify-token",
}


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def run(config: Path, *args: str) -> Ran:
    """The CLI in this process (a new interpreter per call costs seconds on a busy machine)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--config", str(config), *args])
    return Ran(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, valkey_url: str) -> Iterator[Served]:
    """One server for the module: a sandbox WhatsApp channel, the ``survey`` flow."""
    home = tmp_path_factory.mktemp("flowscli")
    port = free_port()
    (home / "flows").mkdir()
    (home / "flows" / "survey.yaml").write_text(FLOW)
    config = write_toml(
        home / "config.toml",
        {
            "server": {"port": port, "admin_token": BEARER},
            "redis": {"url": valkey_url},
            "channels": {"console": {"type": "console"}, "whatsapp": SANDBOX},
        },
    )
    with Served(config, port, home / "serve.log") as server:
        yield server


def test_flows_reload_says_what_changed_and_every_problem(served: Served) -> None:
    flows = served.config.parent / "flows"
    second = "nodes:\n  - id: a\n    send_message: {text: x}\n"
    (flows / "second.yaml").write_text(second)
    done = run(served.config, "flows", "reload")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["loaded: second", "unchanged: survey"]
    (flows / "second.yaml").write_text(second + "    next: b\n")
    bad = run(served.config, "flows", "reload")
    assert bad.returncode == 1
    lines = bad.stdout.splitlines()
    assert "kept (the new file is invalid: the previous version runs on): second" in lines
    assert f"{flows / 'second.yaml'}:4: nodes[0] (a): next: unknown node 'b'" in lines
    assert "1 problem(s)" in bad.stderr


def test_flows_stats_shows_waits_exits_and_results(served: Served) -> None:
    status, _ = http_json(
        f"{served.base}/api/v1/starts", {"flow": "survey", "urns": ["console:ana", "console:bo"]}
    )
    assert status == 202
    done = run(served.config, "flows", "stats", "survey")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith("survey (version ")
    assert "ask (wait_for_reply)" in out
    assert "  Yes → bye" in out and "  next → ask" in out and "  Other → (end)" in out
    missing = run(served.config, "flows", "stats", "nope")
    assert missing.returncode == 1
    assert "no flow 'nope' has run or is loaded; the flows: " in missing.stderr
    assert "survey" in missing.stderr
    usage = run(served.config, "flows", "stats")
    assert usage.returncode == 2 and "chasqui flows stats FLOW" in usage.stderr


def test_templates_show_prints_the_template_and_names_the_others(served: Served) -> None:
    status, synced = http_json(f"{served.base}/api/v1/templates/sync", {})
    assert status == 200 and synced["synced"]["whatsapp"]["templates"] > 0
    shown = run(served.config, "templates", "show", "order_delivered")
    assert shown.returncode == 0, shown.stderr
    es, pt = shown.stdout.split("\n\n")  # one paragraph per language
    assert es.splitlines() == [
        "order_delivered  es  APPROVED  UTILITY  (channel whatsapp)",
        "  body:    Hola {{1}}, tu pedido {{2}} fue entregado. ¿Lo recibiste?",
        "  button:  [Sí, lo recibí] quick_reply",
        "  button:  [No lo recibí] quick_reply",
        "  placeholders: {{1}}, {{2}}",
    ]
    assert pt.startswith("order_delivered  pt_BR  APPROVED")
    rejected = run(served.config, "templates", "show", "promo_rejected")
    assert "REJECTED" in rejected.stdout and "  why: INVALID_FORMAT" in rejected.stdout
    missing = run(served.config, "templates", "show", "nope")
    assert missing.returncode == 1
    assert "no synced template is named 'nope'; the synced ones: " in missing.stderr
    assert "appointment_reminder, order_delivered, paused_promo" in missing.stderr


def test_a_token_the_server_refuses_says_where_it_came_from(served: Served) -> None:
    other = served.config.parent / "other.toml"
    other.write_text(
        served.config.read_text().replace(f'admin_token = "{BEARER}"', 'admin_token = "wrong"')
    )
    done = run(other, "flows", "reload")
    assert done.returncode == 1
    assert "refused the admin token read from server.admin_token" in done.stderr


def test_no_server_is_said_in_words(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[server]\nport = {free_port()}\nadmin_token = "t"\n')
    done = run(config, "flows", "stats", "survey")
    assert done.returncode == 1 and "is `chasqui serve` running?" in done.stderr
