"""``chasqui simulate``: a person chatting with a flow in the terminal.

The chat is driven through its input and output streams: the command in a subprocess, the
function with text streams. By default it plays on a throwaway store of its own; the configured
one (the session's Valkey here) must stay untouched.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from bot.cli.main import main
from bot.convtest.simulate import simulate
from bot.convtest.templateview import render
from bot.core.config import load_config
from bot.store import Store
from channels.whatsapp.preview import preview
from channels.whatsapp.templates import parse_template

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

# Opens with the sandbox's order_delivered template, filled from a contact field.
ORDER = """
name: Order
language: es
nodes:
  - id: open
    send_message:
      text: "Pedido @fields.order_id"
      template:
        name: order_delivered
        body: ["@contact.first_name", "@fields.order_id"]
        buttons: [{quick_reply: RECEIVED}, {quick_reply: NOT_RECEIVED}]
    next: ask
  - id: ask
    wait_for_reply:
      result: delivery
      timeout: 1h
      cases:
        - {has_any_word: [RECEIVED], category: Received, next: thanks}
      other: {category: Other, next: thanks}
      on_timeout: {category: No response, next: late}
  - id: thanks
    send_message: {text: "Gracias @contact.first_name"}
  - id: late
    send_message: {text: "¿Sigues ahí?"}
"""

# Free text first to a WhatsApp contact who never wrote: refused, outside the window.
COLD = """
name: Cold
nodes:
  - id: hi
    send_message: {text: "Hola"}
"""

BAD_TEMPLATE = """
name: Bad template
language: es
nodes:
  - id: open
    send_message:
      template: {name: order_delivered, body: ["only one"]}
    on_failure: bye
  - id: bye
    send_message: {text: "never"}
"""

HOOK = """
name: Hook
nodes:
  - id: call
    call_webhook: {url: "http://127.0.0.1:9/orders", result: lookup}
    next: ok
    on_failure: sorry
  - id: ok
    send_message: {text: "found"}
  - id: sorry
    send_message: {text: "the lookup failed"}
"""

WHATSAPP = """
[channels.whatsapp]
type = "whatsapp"
graph_url = "sandbox"
phone_number_id = "318207746650091"
waba_id = "230918475512034"
access_token = "t"
app_secret = "s"
verify_token = "v"
"""


def _setup(tmp_path: Path, valkey_url: str, flows: dict[str, str], extra: str = "") -> Path:
    (tmp_path / "flows").mkdir()
    for name, text in flows.items():
        (tmp_path / "flows" / f"{name}.yaml").write_text(text)
    config = tmp_path / "config.toml"
    config.write_text(
        f'[redis]\nurl = "{valkey_url}"\n[channels.console]\ntype = "console"\n{extra}'
    )
    return config


async def _chat(config: Path, flow: str, typed: str, **options: Any) -> str:
    out = io.StringIO()
    code = await simulate(
        load_config(config),
        flow,
        stdin=io.StringIO(typed),
        stdout=out,
        **options,
    )
    assert code == 0, out.getvalue()
    return out.getvalue()


def test_simulate_chats_through_the_cli(tmp_path: Path, valkey_url: str) -> None:
    config = _setup(tmp_path, valkey_url, {"greeter": FLOW})
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bot.cli",
            "--config",
            str(config),
            "simulate",
            "greeter",
            "--name",
            "Ana Souza",
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
    assert "1. Coffee" in out and "(1) Coffee" not in out  # no buttons: numbered in the text
    # "1" picks the first quick reply, which the flow routes to the coffee node
    assert "bot> One Coffee for Ana Souza." in out
    # the run's end and its results
    assert "== greeter ended: completed" in out
    assert "   drink: Coffee (value Coffee, input Coffee)" in out


async def test_nothing_is_written_to_the_configured_store(
    tmp_path: Path, valkey_url: str, redis: Redis
) -> None:
    config = _setup(tmp_path, valkey_url, {"greeter": FLOW})
    out = await _chat(config, "greeter", "coffee\n", name="Ana", urn="console:ana")
    assert "bot> One Coffee for Ana." in out
    assert await redis.dbsize() == 0


async def test_fields_reach_the_flow_and_templates_are_shown_rendered(
    tmp_path: Path, valkey_url: str, redis: Redis
) -> None:
    config = _setup(tmp_path, valkey_url, {"order": ORDER}, WHATSAPP)
    out = await _chat(
        config,
        "order",
        "1\n",
        name="Ana Souza",
        urn="whatsapp:+5511988887777",
        fields={"order_id": "A-1"},
    )
    # the sandbox's seed definition, its parameters filled in, its buttons as choices
    assert "bot> [template order_delivered (es)]" in out
    assert "bot> Hola Ana, tu pedido A-1 fue entregado. ¿Lo recibiste?" in out
    assert "bot>   (1) Sí, lo recibí" in out
    assert "Pedido A-1" not in out  # WhatsApp sends the template, not the text
    # tapping the button answers with its payload, as WhatsApp does
    assert "bot> Gracias Ana" in out
    assert "   delivery: Received" in out
    assert await redis.dbsize() == 0


async def test_a_synced_template_is_shown_from_its_definition(
    tmp_path: Path, valkey_url: str, redis: Redis
) -> None:
    config = _setup(tmp_path, valkey_url, {"order": ORDER}, WHATSAPP)
    body = {"type": "BODY", "text": "Olá {{1}}: pedido {{2}} entregue"}
    header = {"type": "HEADER", "format": "TEXT", "text": "Pedido {{1}}"}
    synced = {"name": "order_delivered", "language": "es", "status": "APPROVED"}
    buttons = {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": t} for t in "ab"]}
    await Store(redis).save_templates("whatsapp", [{**synced, "components": [body, buttons]}])
    out = await _chat(config, "order", "", urn="whatsapp:+1555", fields={"order_id": "B-2"})
    assert "bot> Olá Ana: pedido B-2 entregue" in out
    assert "bot>   (2) b" in out
    assert "tu pedido" not in out  # not the seed's wording

    item = {**synced, "components": [header, body]}
    block = {"name": "order_delivered", "language": "es", "header": ["X"], "body": ["Bo", "X"]}
    lines, choices = render(preview(item, parse_template(item), block, language="es"), block)
    assert lines[1:] == ["*Pedido X*", "Olá Bo: pedido X entregue"] and choices == []


async def test_an_unknown_template_shows_its_name_and_parameters(
    tmp_path: Path, valkey_url: str, redis: Redis
) -> None:
    flow = """
name: Unknown
language: en
nodes:
  - id: hi
    send_message: {template: {name: greeting, body: ["@contact.name", "@fields.code"]}}
"""
    config = _setup(tmp_path, valkey_url, {"unknown": flow})
    out = await _chat(config, "unknown", "", name="Bo", urn="console:bo", fields={"code": "7"})
    assert "bot> [template greeting (en): Bo, 7]" in out


async def test_failures_are_printed(tmp_path: Path, valkey_url: str, redis: Redis) -> None:
    flows = {"cold": COLD, "bad": BAD_TEMPLATE, "hook": HOOK}
    config = _setup(tmp_path, valkey_url, flows, WHATSAPP)

    out = await _chat(config, "cold", "", urn="whatsapp:+1555")
    assert "!! not sent (outside_24h_window): Hola" in out
    assert "bot> Hola" not in out
    assert "== cold ended: failed (message at 'hi' not sent: outside_24h_window)" in out

    out = await _chat(config, "bad", "", urn="whatsapp:+1555")
    assert "!! not sent (template_params_mismatch: template 'order_delivered' body" in out
    assert "== bad ended: completed" in out  # its on_failure went on

    out = await _chat(config, "hook", "", urn="console:x")
    assert "!! webhook GET http://127.0.0.1:9/orders failed: 127.0.0.1 is a non-public" in out
    assert "bot> the lookup failed" in out
    assert "   lookup: Failure (value 0)" in out
    assert await redis.dbsize() == 0


async def test_wait_lets_time_pass_and_quit_tells_where_the_run_is(
    tmp_path: Path, valkey_url: str, redis: Redis
) -> None:
    config = _setup(tmp_path, valkey_url, {"order": ORDER})
    out = await _chat(config, "order", "/wait 30m\n/quit\n", urn="console:ana")
    assert "== order still waiting at ask" in out
    out = await _chat(config, "order", "/wait 2h\n", urn="console:ana")
    assert "bot> ¿Sigues ahí?" in out
    assert "   delivery: No response" in out


async def test_live_keeps_the_contact_in_the_configured_store(
    tmp_path: Path, valkey_url: str, redis: Redis
) -> None:
    config = _setup(tmp_path, valkey_url, {"greeter": FLOW})
    out = await _chat(config, "greeter", "coffee\n", name="Ana", urn="console:live", live=True)
    assert "bot> One Coffee for Ana." in out
    assert "== greeter ended: completed" in out
    store = Store(redis)
    cid = await store.contact_id_for_urn("console:live")
    assert cid is not None
    assert [r["status"] for r in await store.ended_runs(cid)] == ["completed"]


def test_simulate_unknown_flow_exits_1(
    tmp_path: Path, valkey_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _setup(tmp_path, valkey_url, {})
    assert main(["--config", str(config), "simulate", "nope"]) == 1
    assert "no valid flow 'nope'" in capsys.readouterr().err


def test_a_bad_field_is_a_usage_error(
    tmp_path: Path, valkey_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _setup(tmp_path, valkey_url, {"greeter": FLOW})
    with pytest.raises(SystemExit) as exit_:
        main(["--config", str(config), "simulate", "greeter", "--field", "order_id"])
    assert exit_.value.code == 2
    assert "write KEY=VALUE" in capsys.readouterr().err
