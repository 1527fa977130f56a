"""``chasqui check`` against the synced templates, and the free-text-first warning."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.cli.main import main
from bot.flow.files import load_folder
from bot.store import Store
from bot.store.redisconn import connect
from bot.work.flowcheck import channel_cannot
from channels.protocol import Capabilities
from channels.whatsapp.sandbox.templates import demo_templates

FLOW = """
name: Promo
language: es
nodes:
  - id: channel
    update_contact: {channel: wa}
    next: hello
  - id: hello
    send_message:
      template: {name: order_delivered, body: ["@contact.first_name", "@fields.order_id"]}
    next: two
  - id: two
    send_message:
      template: {name: order_delivered, body: ["@contact.first_name"]}
    next: three
  - id: three
    send_message:
      template: {name: order_delivered, language: pt, body: ["a", "b"]}
    next: four
  - id: four
    send_message:
      template: {name: promo_rejected}
"""

FREE_TEXT_FIRST = """
nodes:
  - id: channel
    update_contact: {channel: wa}
    next: hello
  - id: hello
    send_message: {text: "Hi there"}
"""


def project(tmp_path: Path, valkey_url: str, flow: str) -> str:
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "promo.yaml").write_text(flow)
    (tmp_path / "config.toml").write_text(
        f'[redis]\nurl = "{valkey_url}"\n'
        '[channels.wa]\ntype = "whatsapp"\nphone_number_id = "1"\nwaba_id = "2"\n'
        'access_token = "t"\napp_secret = "s"\ngraph_url = "http://127.0.0.1:9"\n'
    )
    return str(tmp_path / "config.toml")


async def seed(valkey_url: str) -> None:
    redis = connect(valkey_url)
    try:
        await redis.flushall()
        await Store(redis).save_templates("wa", demo_templates())
    finally:
        await redis.aclose()


def test_check_reports_template_problems_with_node_and_line(
    tmp_path: Path, valkey_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = project(tmp_path, valkey_url, FLOW)
    asyncio.run(seed(valkey_url))
    assert main(["--config", config, "check"]) == 1
    out = capsys.readouterr().out.splitlines()
    flow = tmp_path / "flows" / "promo.yaml"
    problems = [line for line in out if line.startswith(str(flow))]
    assert len(problems) == 3, out  # node "hello" is fine
    assert problems[0].startswith(
        f"{flow}:13: nodes[2] (two): send_message.template: wa: template_params_mismatch"
    )
    assert f"{flow}:17: nodes[3] (three)" in problems[1]
    assert "template_not_found" in problems[1] and "pt_BR" in problems[1]  # names the real one
    assert f"{flow}:21: nodes[4] (four)" in problems[2]
    assert "template_not_approved" in problems[2] and "REJECTED" in problems[2]


def test_check_without_synced_templates_says_so_and_passes(
    tmp_path: Path, valkey_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = project(tmp_path, valkey_url, FLOW)
    asyncio.run(connect_and_flush(valkey_url))
    assert main(["--config", config, "check"]) == 0
    captured = capsys.readouterr()
    assert "templates not checked: none synced yet" in captured.err


def test_free_text_first_on_whatsapp_is_a_warning(
    tmp_path: Path, valkey_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = project(tmp_path, valkey_url, FREE_TEXT_FIRST)
    asyncio.run(seed(valkey_url))
    assert main(["--config", config, "check"]) == 0  # a warning, not an error
    out = capsys.readouterr().out
    assert "nodes[1] (hello): warning: the first message is free text" in out


async def connect_and_flush(valkey_url: str) -> None:
    redis = connect(valkey_url)
    try:
        await redis.flushall()
    finally:
        await redis.aclose()


WHAT_CHANNELS_CANNOT = """
name: Everywhere
language: es
nodes:
  - id: opening
    send_message:
      template: {name: order_delivered, body: ["@contact.first_name", "@fields.order_id"]}
    next: picture
  - id: picture
    send_message: {text: "Mira", attachment: "https://x.test/a.png"}
    next: many
  - id: many
    send_message:
      text: "¿Cuál?"
      quick_replies: ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10"]
    next: few
  - id: few
    send_message:
      text: "¿Seguro?"
      quick_replies: ["Sí", "No"]
      template: {name: order_delivered, body: ["a", "b"]}
"""


def test_what_a_channel_cannot_do_is_a_warning_naming_it(
    tmp_path: Path, valkey_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = project(tmp_path, valkey_url, WHAT_CHANNELS_CANNOT)
    with open(config, "a") as extra:
        extra.write('[channels.term]\ntype = "console"\n[channels.tg]\ntype = "telegram"\n')
        extra.write('bot_token = "1:x"\nsecret_token = "s"\n')
    asyncio.run(seed(valkey_url))
    assert main(["--config", config, "check"]) == 0  # warnings, not errors
    out = [line for line in capsys.readouterr().out.splitlines() if "on channel" in line]
    # the template alone cannot go where there are no templates (the console, Telegram)
    assert [line.split(": warning: ")[1].split(":")[0] for line in out if "(opening)" in line] == [
        "on channel term",
        "on channel tg",
    ]
    assert any(
        "(picture)" in line and "on channel term: this channel sends no media" in line
        for line in out
    )
    assert not any("(picture)" in line and "channel tg" in line for line in out)  # has media
    # 10 options: more than WhatsApp's 3 buttons but within its 10 list rows; the console has
    # no buttons at all (numbered options are how it works: no warning)
    assert not any("(many)" in line for line in out)
    assert not any("(few)" in line for line in out)  # it has a text


def test_more_quick_replies_than_buttons_without_lists_are_numbered_there(tmp_path: Path) -> None:
    (tmp_path / "f.yaml").write_text(WHAT_CHANNELS_CANNOT)
    flows, problems = load_folder(tmp_path, set())
    assert not problems, problems
    many = flows["f"].nodes["many"]
    assert list(channel_cannot(many, Capabilities(schemes=("x",), buttons=3))) == [
        "10 quick replies, but this channel shows at most 3: they go as numbered options in "
        "the text"
    ]
    assert list(channel_cannot(many, Capabilities(schemes=("x",), buttons=3, list_rows=10))) == []
    assert list(channel_cannot(many, Capabilities(schemes=("x",)))) == []  # numbered by design
