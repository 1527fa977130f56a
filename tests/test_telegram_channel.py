"""The Telegram channel end to end: Chasqui's app and a local stand-in of the Bot API, both on
real HTTP over loopback. Updates go in through the webhook ``setWebhook`` registered (with its
secret header), flows answer through the stand-in, and its injected errors (403, 429, 5xx, a
hang) show what the sender does with each."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from bot.cli.main import main
from bot.core.clock import Clock
from bot.core.config import ConfigError
from bot.store.keys import rate_key
from channels.protocol import ChannelConfig, build_channels
from channels.telegram.channel import TelegramChannel
from tests.support.api import Api, MakeApi, write_flows
from tests.support.serve import write_toml
from tests.support.telegram import TelegramStandIn
from tests.support.waiting import wait_for

TOKEN = "7001234567:AAH-test-token_for-the-stand-in"
SECRET = "s3cret_Token-for-webhooks"
ANA, BRUNO = 6102938475, 6102938476

ORDER = """\
name: Order on Telegram
language: es
nodes:
  - id: open
    send_message:
      text: "Hola @contact.first_name, ¿recibiste tu pedido?"
      quick_replies: ["Sí, recibido", "No"]
    next: ask
    on_failure: unreachable
  - id: ask
    wait_for_reply:
      result: delivery
      cases:
        - {has_any_word: ["si", "recibido"], category: Received, next: thanks}
        - {has_any_word: ["no"], category: Not received, next: sorry}
      other: {category: Other, next: open}
  - id: thanks
    send_message: {text: "¡Gracias!"}
  - id: sorry
    send_message:
      text: "Lo sentimos. Te mandamos el comprobante."
      attachment: "https://example.com/files/comprobante-A1042.pdf"
  - id: unreachable
    add_to_group: Unreachable
"""

AiohttpServer = Callable[..., Awaitable[TestServer]]


class SkewClock(Clock):
    """The runtime's time, ``ahead`` seconds in the future: a retry's time comes at once."""

    ahead = 0.0

    def now(self) -> float:
        return time.time() + self.ahead


@dataclass
class TG:
    api: Api
    bot: TelegramStandIn
    clock: SkewClock

    @property
    def channel(self) -> TelegramChannel:
        channel = self.api.runtime.channels["tg"]
        assert isinstance(channel, TelegramChannel)
        return channel

    async def contact_of(self, chat_id: int) -> str:
        urn = f"telegram:{chat_id}"
        return str(await wait_for(lambda: self.api.store.contact_id_for_urn(urn), urn))

    async def start(self, chat_id: int, flow: str = "order") -> str:
        cid = await self.contact_of(chat_id)
        status, body = await self.api.post(f"/api/v1/contacts/{cid}/start", {"flow": flow})
        assert status == 202, body
        return cid

    async def out(self, cid: str, count: int) -> list[dict[str, Any]]:
        """The contact's ``count`` outgoing messages, once none is queued any more."""

        async def settled() -> list[dict[str, Any]]:
            _, body = await self.api.get(f"/api/v1/contacts/{cid}/messages")
            out = [m for m in body["messages"] if m["direction"] == "out"]
            return out if len(out) == count and all(m["status"] != "queued" for m in out) else []

        return await wait_for(settled, f"{count} messages out")

    async def retry_now(self) -> None:
        """What the timer loop does once a held message's time has come."""
        self.clock.ahead += 60
        await self.api.store.fire_timers(self.clock.now())

    async def sent_texts(self, count: int) -> list[str]:
        async def enough() -> list[str]:
            texts = self.bot.texts()
            return texts if len(texts) >= count else []

        return await wait_for(enough, f"{count} sends at the stand-in")


@pytest.fixture
async def tg(make_api: MakeApi, aiohttp_server: AiohttpServer) -> TG:
    bot = TelegramStandIn(TOKEN)
    server = await aiohttp_server(bot.app())
    settings = {
        "type": "telegram",
        "bot_token": TOKEN,
        "secret_token": SECRET,
        "api_url": str(server.make_url("")),
        "request_timeout": "1s",
    }
    clock = SkewClock()
    api = await make_api({"order": ORDER}, clock=clock, channels={"tg": settings})
    url = str(api.client.make_url("/webhooks/telegram/tg"))
    said = await TG(api, bot, clock).channel.register_webhook(url)
    assert url in said
    assert bot.webhook == {
        "url": url,
        "secret_token": SECRET,
        "allowed_updates": ["message", "callback_query"],
    }
    return TG(api, bot, clock)


async def test_a_typed_reply_is_answered_by_the_flow(tg: TG) -> None:
    assert await tg.bot.text(ANA, "hola", name="Ana") == 200
    cid = await tg.start(ANA)
    assert await tg.sent_texts(1) == ["Hola Ana, ¿recibiste tu pedido?"]
    [opening] = tg.bot.sent("sendMessage")
    assert opening["chat_id"] == ANA
    assert opening["reply_markup"] == {
        "inline_keyboard": [
            [
                {"text": "Sí, recibido", "callback_data": "Sí, recibido"},
                {"text": "No", "callback_data": "No"},
            ]
        ]
    }
    assert await tg.bot.text(ANA, "si!") == 200
    assert (await tg.sent_texts(2))[1] == "¡Gracias!"
    first, second = await tg.out(cid, 2)
    assert first["external_id"] == f"{ANA}:2"  # the chat's message 1 was Ana's "hola"
    assert second["status"] == "sent"
    _, contact = await tg.api.get(f"/api/v1/contacts/{cid}")
    assert contact["name"] == "Ana" and contact["urns"] == [f"telegram:{ANA}"]
    _, runs = await tg.api.get(f"/api/v1/contacts/{cid}/runs")
    assert runs["runs"][0]["results"]["delivery"]["category"] == "Received"


async def test_a_new_contact_who_writes_a_keyword_gets_the_flow(tg: TG) -> None:
    tg.api.flows.joinpath("pedido.yaml").write_text(
        "triggers: [{keywords: [pedido]}]\n"
        "nodes:\n"
        "  - id: a\n    send_message: {text: 'Tu pedido @trigger.keyword está en camino'}\n",
        encoding="utf-8",
    )
    assert not tg.api.runtime.load_flows().problems
    assert await tg.bot.text(BRUNO, "¡Pedido! A-1042", name="Bruno") == 200
    assert await tg.sent_texts(1) == ["Tu pedido pedido está en camino"]
    assert tg.bot.sent()[0]["chat_id"] == BRUNO


async def test_a_tap_is_answered_and_routed_like_a_typed_reply(tg: TG) -> None:
    await tg.bot.text(ANA, "hola")
    cid = await tg.start(ANA)
    await tg.sent_texts(1)
    tap = tg.bot.tap_update(ANA, "No")
    assert await tg.bot.deliver(tap) == 200
    await tg.sent_texts(2)
    [answer] = await wait_for(
        lambda: _async(tg.bot.sent("answerCallbackQuery")), "the callback answered"
    )
    assert answer == {"callback_query_id": tap["callback_query"]["id"]}
    [document] = tg.bot.sent("sendDocument")
    assert document["document"] == "https://example.com/files/comprobante-A1042.pdf"
    assert document["caption"] == "Lo sentimos. Te mandamos el comprobante."
    _, body = await tg.api.get(f"/api/v1/contacts/{cid}/messages")
    [_, no] = [m for m in body["messages"] if m["direction"] == "in"]
    assert (no["text"], no["payload"], no["msg_type"]) == ("No", "No", "button")
    _, runs = await tg.api.get(f"/api/v1/contacts/{cid}/runs")
    assert runs["runs"][0]["results"]["delivery"]["category"] == "Not received"
    # Telegram redelivers an update it did not see acknowledged: one reply, one answer
    assert await tg.bot.deliver(tap) == 200
    await asyncio.sleep(0.2)
    assert len(tg.bot.sent("answerCallbackQuery")) == 1 and len(tg.bot.sent()) == 2


async def test_a_long_title_still_comes_back_whole(tg: TG) -> None:
    title = "Quiero cambiar la dirección de entrega de mi pedido, por favor 🙏"
    tg.api.flows.joinpath("long.yaml").write_text(
        "nodes:\n"
        f"  - id: q\n    send_message: {{text: ¿Qué hacemos?, quick_replies: ['{title}', Nada]}}\n"
        "    next: w\n"
        "  - id: w\n    wait_for_reply: {result: choice, other: {category: Other}}\n",
        encoding="utf-8",
    )
    tg.api.runtime.load_flows()
    await tg.bot.text(ANA, "hola")
    cid = await tg.start(ANA, "long")
    await tg.sent_texts(1)
    [buttons] = [b["reply_markup"]["inline_keyboard"] for b in tg.bot.sent("sendMessage")]
    assert [[b["text"] for b in row] for row in buttons] == [[title], ["Nada"]]
    assert len(buttons[0][0]["callback_data"].encode()) <= 64
    assert await tg.bot.tap(ANA, title) == 200
    _, runs = await wait_for(lambda: _finished_run(tg, cid), "the run to take the tap")
    assert runs["results"]["choice"]["value"] == title


async def test_a_bad_secret_is_refused_and_nothing_is_stored(tg: TG) -> None:
    update = tg.bot.message(ANA, text="hola")
    assert await tg.bot.deliver(update, secret="wrong") == 401
    async with tg.api.client.post("/webhooks/telegram/tg", json=update) as response:
        assert response.status == 401
        assert (await response.json())["error"]["code"] == "bad_secret"
    assert await tg.api.store.contact_id_for_urn(f"telegram:{ANA}") is None
    assert await tg.api.store.redis.keys("chasqui:seen:*") == []
    # junk with the right secret: a JSON error, never a 500
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
    for junk in (b"[1]", b"{", b'{"update_id": "x"}', b'{"update_id": 1, "message": {}}'):
        async with tg.api.client.post(
            "/webhooks/telegram/tg", data=junk, headers=headers
        ) as response:
            assert response.status == 400, junk
    # an update of a kind we do not take is acknowledged (else Telegram sends it again)
    assert await tg.bot.deliver(tg.bot.update(edited_message={"message_id": 3})) == 200


async def test_a_redelivered_update_is_queued_once(tg: TG) -> None:
    await tg.bot.text(ANA, "hola")
    cid = await tg.start(ANA)
    await tg.sent_texts(1)
    update = tg.bot.message(ANA, text="si")
    assert [await tg.bot.deliver(update) for _ in range(3)] == [200, 200, 200]
    await tg.out(cid, 2)
    await asyncio.sleep(0.2)
    assert tg.bot.texts() == ["Hola Ana, ¿recibiste tu pedido?", "¡Gracias!"]
    _, body = await tg.api.get(f"/api/v1/contacts/{cid}/messages")
    assert [m["text"] for m in body["messages"] if m["direction"] == "in"] == ["hola", "si"]


async def test_photos_documents_locations_and_contacts_come_in(tg: TG) -> None:
    tg.bot.files["AgACAgEAAxkBAAIBQ2photo-large"] = ("photos/file_7.jpg", b"\xff\xd8jpeg")
    photo = [
        {"file_id": "AgACAgEAAxkBAAIBQ2photo-small", "width": 90, "height": 90},
        {"file_id": "AgACAgEAAxkBAAIBQ2photo-large", "width": 1280, "height": 960},
    ]
    document = {"file_id": "BQACAgEAAxkBAAIBRGdoc", "file_name": "boleta.pdf"}
    document["mime_type"] = "application/pdf"
    updates = [
        tg.bot.message(ANA, photo=photo, caption="así llegó"),
        tg.bot.message(ANA, document=document),
        tg.bot.message(
            ANA,
            venue={
                "location": {"latitude": -12.0464, "longitude": -77.0428},
                "title": "Casa",
                "address": "Av. Arequipa 123",
            },
        ),
        tg.bot.message(ANA, contact={"phone_number": "51987650123", "first_name": "Bruno"}),
    ]
    for update in updates:
        assert await tg.bot.deliver(update) == 200
    cid = await tg.contact_of(ANA)

    async def four() -> list[dict[str, Any]]:
        _, body = await tg.api.get(f"/api/v1/contacts/{cid}/messages")
        return body["messages"] if len(body["messages"]) == 4 else []

    image, pdf, place, card = await wait_for(four, "four messages in")
    assert (image["msg_type"], image["text"]) == ("image", "así llegó")
    assert image["media"]["id"] == "AgACAgEAAxkBAAIBQ2photo-large"
    assert (pdf["msg_type"], pdf["media"]["filename"]) == ("document", "boleta.pdf")
    assert place["location"] == {
        "latitude": -12.0464,
        "longitude": -77.0428,
        "name": "Casa",
        "address": "Av. Arequipa 123",
    }
    assert place["text"] == "Casa, Av. Arequipa 123"
    assert card["contacts"][0]["phones"] == [{"phone": "+51987650123", "type": "CELL"}]
    assert await tg.channel.fetch_media("AgACAgEAAxkBAAIBQ2photo-large") == (
        b"\xff\xd8jpeg",
        "image/jpeg",
    )
    assert await tg.channel.fetch_media("AgACAgEAAxkBAAIBQ2unknown") is None


async def test_a_blocked_bot_fails_the_message_for_good(tg: TG) -> None:
    await tg.bot.text(ANA, "hola")
    await tg.bot.text(BRUNO, "hola", name="Bruno")
    tg.bot.blocked.add(BRUNO)
    status, start = await tg.api.post(
        "/api/v1/starts", {"flow": "order", "urns": [f"telegram:{ANA}", f"telegram:{BRUNO}"]}
    )
    assert status == 202, start
    bruno = await tg.contact_of(BRUNO)
    [message] = await tg.out(bruno, 1)
    assert message["status"] == "failed" and message.get("attempts", 1) == 1
    assert message["error"]["code"] == "contact_unreachable"
    assert "blocked the bot" in message["error"]["message"]

    async def groups() -> list[str]:
        _, contact = await tg.api.get(f"/api/v1/contacts/{bruno}")
        return list(contact["groups"])

    assert await wait_for(groups, "on_failure") == ["Unreachable"]  # the flow took on_failure

    async def failed() -> list[dict[str, Any]]:
        _, body = await tg.api.get(f"/api/v1/starts/{start['uuid']}/contacts?status=failed")
        return list(body["contacts"])

    [outcome] = await wait_for(failed, "the start's failure")
    assert outcome["contact"] == bruno and outcome["reason"] == "contact_unreachable"
    assert "never started a chat" in outcome["message"]


async def test_flood_control_is_honoured(tg: TG) -> None:
    await tg.bot.text(ANA, "hola")
    tg.bot.fail(429, "Too Many Requests: retry after 7", retry_after=7)
    cid = await tg.start(ANA)
    message = await wait_for(lambda: _held(tg, cid, 1), "the message held")
    assert message["last_error"]["code"] == "rate_limited"
    tried = tg.bot.tried("sendMessage")[-1].at
    assert 6.5 < message["retry_at"] - tried < 7.5
    await tg.retry_now()
    [sent] = await tg.out(cid, 1)
    assert (sent["status"], sent["attempts"]) == ("sent", 2)


async def test_server_errors_and_timeouts_retry_with_backoff(tg: TG) -> None:
    await tg.bot.text(ANA, "hola")
    tg.bot.fail(502, "Bad Gateway")
    tg.bot.fail(504, "Gateway Timeout", hang=3.0)  # longer than the channel's request_timeout (1 s)
    cid = await tg.start(ANA)
    delays, codes = [], []
    for attempt in (1, 2):
        message = await wait_for(lambda a=attempt: _held(tg, cid, a), f"retry {attempt}")
        tried = tg.bot.tried("sendMessage")[-1].at + tg.clock.ahead
        delays.append(message["retry_at"] - tried)
        codes.append(message["last_error"]["code"])
        await tg.retry_now()
    [sent] = await tg.out(cid, 1)
    assert (sent["status"], sent["attempts"]) == ("sent", 3)
    assert codes == ["telegram_unavailable", "timeout"]
    assert 1.5 < delays[0] < 2.5  # 2 s, then 4 s after the timeout (1 s) gave up
    assert 4.5 < delays[1] < 5.5


async def test_sends_take_the_chat_and_bot_rate_buckets(tg: TG) -> None:
    await tg.bot.text(ANA, "hola")
    await tg.start(ANA)
    await tg.sent_texts(1)
    bot_id = TOKEN.split(":")[0]
    redis = tg.api.store.redis
    assert await redis.exists(rate_key(f"telegram:{bot_id}:{ANA}"), rate_key(f"telegram:{bot_id}"))
    assert tg.channel.capabilities.rate is not None
    assert tg.channel.capabilities.rate.per_second == 30
    assert tg.channel.host._turns == {}  # type: ignore[attr-defined]  # no lock per chat kept


async def test_a_wrong_token_holds_the_message_and_says_so(
    make_api: MakeApi, aiohttp_server: AiohttpServer
) -> None:
    bot = TelegramStandIn("7001234567:the-real-token")
    server = await aiohttp_server(bot.app())
    settings = {"type": "telegram", "bot_token": TOKEN, "secret_token": SECRET}
    api = await make_api(
        {"order": ORDER}, channels={"tg": {**settings, "api_url": str(server.make_url(""))}}
    )
    channel = api.runtime.channels["tg"]
    result = await channel.send({"urn": f"telegram:{ANA}", "text": "hola"})
    assert not result.ok and result.retry_after == 300
    assert result.error is not None and result.error["code"] == "bot_token_invalid"
    assert channel.health()["status"] == "unhealthy"
    assert TOKEN not in str(result.error) and TOKEN not in str(channel.health())
    with pytest.raises(ValueError, match=r"refused the bot token \(401\): Unauthorized"):
        await channel.register_webhook("https://bot.example.com/webhooks/telegram/tg")


@pytest.mark.parametrize(
    ("settings", "complaint"),
    [
        ({"bot_token": "not-a-token"}, "not a bot token"),
        ({"secret_token": "spaces are not allowed"}, "1 to 256 characters"),
        ({"api_url": "ftp://x"}, "an http(s) URL"),
    ],
)
def test_settings_are_checked_without_echoing_secrets(
    settings: dict[str, str], complaint: str
) -> None:
    config = ChannelConfig.model_validate(
        {"type": "telegram", "bot_token": TOKEN, "secret_token": SECRET, **settings}
    )
    with pytest.raises(ConfigError, match=re.escape(complaint)) as caught:
        build_channels({"tg": config}, host=None)  # type: ignore[arg-type]
    assert "not-a-token" not in str(caught.value)
    assert "spaces are not allowed" not in str(caught.value)


async def _async(value: Any) -> Any:
    return value


async def _held(tg: TG, cid: str, attempts: int) -> dict[str, Any] | None:
    _, body = await tg.api.get(f"/api/v1/contacts/{cid}/messages")
    out = [m for m in body["messages"] if m["direction"] == "out"]
    if out and out[0].get("attempts") == attempts and out[0].get("retry_at"):
        return dict(out[0])
    return None


async def _finished_run(tg: TG, cid: str) -> tuple[int, dict[str, Any]] | None:
    status, body = await tg.api.get(f"/api/v1/contacts/{cid}/runs")
    run = body["runs"][0]
    return (status, run) if run["status"] == "completed" else None


async def test_channels_setup_registers_the_webhook(
    aiohttp_server: AiohttpServer,
    valkey_url: str,
    redis: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bot = TelegramStandIn(TOKEN)
    server = await aiohttp_server(bot.app())
    settings = {"type": "telegram", "bot_token": TOKEN, "secret_token": SECRET}
    config = write_toml(
        tmp_path / "config.toml",
        {
            "server": {"public_url": "https://bot.example.com/"},
            "redis": {"url": valkey_url, "data_dir": str(tmp_path / "var")},
            "flows": {"path": str(write_flows(tmp_path / "flows", {}))},
            "channels": {"tg": {**settings, "api_url": str(server.make_url(""))}},
        },
    )

    def cli(*argv: str) -> Any:
        return asyncio.to_thread(main, ["--config", str(config), "channels", *argv])

    assert await cli("setup", "tg") == 0
    assert bot.webhook == {
        "url": "https://bot.example.com/webhooks/telegram/tg",
        "secret_token": SECRET,
        "allowed_updates": ["message", "callback_query"],
    }
    out, _ = capsys.readouterr()
    assert "tg: Telegram posts @chasqui_test_bot's updates to https://bot.example.com/" in out
    assert TOKEN not in out
    assert await cli("setup", "tg", "--url", "ftp://elsewhere") == 1
    assert "setWebhook refused (400)" in capsys.readouterr().err
    assert await cli("setup", "nope") == 2
    assert await cli("list") == 0
    assert "tg               telegram" in capsys.readouterr().out
