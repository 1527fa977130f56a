"""``chasqui check`` against the synced templates, and the free-text-first warning."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.cli.main import main
from bot.store import Store
from bot.store.redisconn import connect
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
