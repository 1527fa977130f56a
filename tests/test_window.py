"""The 24-hour window gate, button payloads as replies, and late (stale) inbound messages."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bot.engine.sprint import Route
from tests.support.harness import Bot, MakeBot

FLOW = """
nodes:
  - id: open
    send_message:
      text: "Hi @contact.first_name"
      template: {name: hello, body: ["@contact.first_name"]}
    next: ask
  - id: ask
    wait_for_reply:
      cases:
        - {has_any_word: [CONFIRM_ORDER], category: Confirmed, next: thanks}
      other: {category: Other, next: free}
  - id: thanks
    send_message: {text: "Thanks"}
  - id: free
    send_message: {text: "Free text"}
    on_failure: failed
  - id: failed
    set_result: {name: gate, value: closed}
"""


@pytest.fixture
async def bot(make_bot: MakeBot) -> Bot:
    b = await make_bot()
    b.registry.routes = [Route("cap", ("tel",), window=24 * 3600, templates=True)]  # WhatsApp-like
    b.write("gate", FLOW)
    return b


async def test_template_goes_outside_the_window_free_text_does_not(bot: Bot) -> None:
    cid = await bot.contact()
    await bot.start(cid, "gate")
    await bot.drain()
    (opening,) = await bot.messages(cid)
    assert opening["status"] == "sent" and opening["template"]["name"] == "hello"

    # a reply opens the window: free text is allowed right after it
    await bot.reply(cid, "hmm", channel="cap")
    await bot.drain()
    sent = await bot.messages(cid)
    assert [m.get("text") for m in sent] == [None, "Free text"]
    assert sent[-1]["status"] == "sent"


async def test_free_text_outside_the_window_fails_locally_and_takes_on_failure(bot: Bot) -> None:
    cid = await bot.contact()
    await bot.start(cid, "gate")
    await bot.drain()
    # a reply with no channel (e.g. recorded from elsewhere) opens no window on "cap"
    await bot.reply(cid, "hmm")
    await bot.drain()
    out = await bot.messages(cid)
    assert out[-1]["text"] == "Free text"
    assert out[-1]["status"] == "failed"
    assert out[-1]["error"] == {"code": "outside_24h_window"}
    assert [m.get("text") for m in bot.channel.sent] == [None]  # "Free text" never went
    (run,) = await bot.runs(cid)
    assert run["results"]["gate"]["value"] == "closed"
    assert run["errors"][0]["code"] == "outside_24h_window"


async def test_window_closes_a_margin_before_24_hours(bot: Bot) -> None:
    cid = await bot.contact()
    await bot.start(cid, "gate")
    await bot.drain()
    await bot.reply(cid, "hmm", channel="cap")  # sent now; processed 23h59m later
    bot.clock.advance(24 * 3600 - 60)
    bot.registry.limits = replace(bot.registry.limits, max_reply_age=2 * 86400)
    bot.registry.reload()
    await bot.drain()
    out = await bot.messages(cid)
    assert out[-1]["error"] == {"code": "outside_24h_window"}


async def test_a_button_payload_matches_cases_like_the_text(bot: Bot) -> None:
    cid = await bot.contact()
    await bot.start(cid, "gate")
    await bot.drain()
    await bot.store.enqueue(
        cid,
        {
            "type": "reply",
            "text": "Sí, confirmo",
            "payload": "CONFIRM_ORDER",
            "channel": "cap",
            "at": bot.clock.now(),
        },
    )
    await bot.drain()
    assert [m.get("text") for m in await bot.messages(cid)] == [None, "Thanks"]
    inbound = (await bot.messages(cid, "in"))[0]
    assert inbound["payload"] == "CONFIRM_ORDER" and inbound["text"] == "Sí, confirmo"


async def test_a_reply_older_than_max_reply_age_is_recorded_not_answered(bot: Bot) -> None:
    cid = await bot.contact()
    await bot.start(cid, "gate")
    await bot.drain()
    await bot.store.enqueue(
        cid,
        {
            "type": "reply",
            "text": "late",
            "channel": "cap",
            "sent_at": bot.clock.now() - 7200,
            "at": bot.clock.now(),
        },
    )
    await bot.drain()
    assert [m.get("text") for m in await bot.messages(cid)] == [None]
    (inbound,) = await bot.messages(cid, "in")
    assert inbound["status"] == "stale"
    session = await bot.session(cid)
    assert session["wait"]["node"] == "ask"  # still waiting for a real answer
