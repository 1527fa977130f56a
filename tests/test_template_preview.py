"""A template previewed through the channel protocol (``Channel.preview_template``), and the
channel-type hooks ``chasqui`` uses without naming a type (its commands, serving refusals)."""

from __future__ import annotations

import subprocess
import sys

from bot.cli.main import build_parser
from bot.core.config import ChannelConfig
from channels.protocol import TemplateButton, channel_class, channel_types
from tests.support.whatsapp import WA


async def test_the_whatsapp_channel_previews_a_synced_template_over_http(wa: WA) -> None:
    assert await wa.sync_templates() > 0  # from the sandbox, over HTTP
    channel = wa.runtime.channels["whatsapp"]
    block = {"name": "order_delivered", "language": "es", "body": ["Ana", "A-7"]}
    block["buttons"] = [{"quick_reply": "yes"}, {"quick_reply": "no"}]
    shown = channel.preview_template(block)
    assert shown is not None and shown.known and shown.problem is None
    assert shown.body == "Hola Ana, tu pedido A-7 fue entregado. ¿Lo recibiste?"
    assert shown.buttons == (
        TemplateButton("quick_reply", "Sí, lo recibí", "yes"),
        TemplateButton("quick_reply", "No lo recibí", "no"),
    )
    named = channel.preview_template(
        {
            "name": "appointment_reminder",
            "language": "en",
            "header": ["https://x.example/a.png"],
            "body": {"first_name": "Bo", "time": "3 pm"},
        }
    )
    assert named is not None and named.header_media == "image"
    assert (named.header, named.footer) == ("https://x.example/a.png", "Chasqui Demo")
    assert named.body == "Hi Bo, a reminder of your appointment at 3 pm."
    wrong = channel.preview_template({"name": "order_delivered", "language": "es", "body": []})
    assert wrong is not None and wrong.problem is not None
    assert wrong.problem["code"] == "template_params_mismatch"
    unknown = channel.preview_template({"name": "nope", "language": "es"})
    assert unknown is not None and not unknown.known
    assert unknown.problem is not None and unknown.problem["code"] == "template_not_found"


def test_a_channel_without_templates_previews_none() -> None:
    console = channel_class("console")
    assert not console.CAPABILITIES.templates and console.demo_templates() == []

    class NoHost:
        async def templates(self, channel: str) -> list[dict[str, object]]:
            return []

    channel = console("c", ChannelConfig(type="console"), NoHost())  # type: ignore[arg-type]
    assert channel.preview_template({"name": "order_delivered", "language": "es"}) is None


def test_chasqui_has_the_commands_its_channel_types_bring() -> None:
    assert {"console", "whatsapp"} <= set(channel_types())
    assert "protocol" not in channel_types()
    parser = build_parser()
    args = parser.parse_args(["sandbox", "--port", "9", "--no-statuses"])
    assert (args.port, args.no_statuses) == (9, True)


def test_the_sandbox_command_refuses_a_public_address() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "sandbox", "--host", "0.0.0.0", "--admin-token", "t"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "listens on loopback only" in result.stderr


def test_serving_an_in_process_sandbox_is_refused_on_a_public_host() -> None:
    whatsapp = channel_class("whatsapp")
    config = ChannelConfig.model_validate(
        {
            "type": "whatsapp",
            "graph_url": "sandbox",
            "phone_number_id": "1",
            "waba_id": "2",
            "access_token": "a",
            "app_secret": "s",
            "verify_token": "v",
        }
    )
    assert whatsapp.serving_problem(config, host="127.0.0.1", processes=1) is None
    public = whatsapp.serving_problem(config, host="0.0.0.0", processes=1)
    assert public is not None and "loopback only" in public
    shared = whatsapp.serving_problem(config, host="::1", processes=2)
    assert shared is not None and "cannot share an in-process sandbox" in shared
