"""``chasqui simulate``: a person chatting with a flow in the terminal, through the real CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bot.convtest.simulate import render_message

FLOW = """
name: Greeter
nodes:
  - id: hello
    send_message:
      text: "Hi @contact.first_name! Coffee or tea?"
      quick_replies: [Coffee, Tea]
      template: {name: greeting, body: ["@contact.first_name"]}
    next: ask
  - id: ask
    wait_for_reply:
      result: drink
      cases:
        - {has_any_word: [coffee], category: Coffee, next: coffee}
      other: {category: Other, next: hello}
  - id: coffee
    send_message: {text: "One @results.drink.category for @contact.name."}
"""


def test_render_message_shows_template_text_and_choices() -> None:
    lines = render_message(
        {
            "text": "Hi",
            "quick_replies": ["Yes", "No"],
            "attachment": "https://x/y.png",
            "template": {"name": "greeting", "language": "en", "body": ["Ana"]},
        }
    )
    assert lines == [
        "[template greeting (en): Ana]",
        "Hi",
        "[attachment https://x/y.png]",
        "  (1) Yes",
        "  (2) No",
    ]


def test_simulate_chats_through_the_cli(tmp_path: Path, valkey_url: str) -> None:
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "greeter.yaml").write_text(FLOW)
    (tmp_path / "config.toml").write_text(
        f'[redis]\nurl = "{valkey_url}"\n[channels.console]\ntype = "console"\n'
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bot.cli",
            "--config",
            str(tmp_path / "config.toml"),
            "simulate",
            "greeter",
            "--name",
            "Ana Souza",
            "--urn",
            f"console:{tmp_path.name}",
        ],
        input="1\n/quit\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "[template" not in out  # the console has no templates: it gets the text
    assert "bot> Hi Ana! Coffee or tea?" in out
    assert "bot>   (1) Coffee" in out
    # "1" picks the first quick reply, which the flow routes to the coffee node
    assert "bot> One Coffee for Ana Souza." in out


def test_simulate_unknown_flow_exits_1(tmp_path: Path, valkey_url: str) -> None:
    (tmp_path / "flows").mkdir()
    (tmp_path / "config.toml").write_text(f'[redis]\nurl = "{valkey_url}"\n')
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bot.cli",
            "--config",
            str(tmp_path / "config.toml"),
            "simulate",
            "nope",
        ],
        input="",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "no valid flow 'nope'" in result.stderr
