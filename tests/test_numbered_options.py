"""Quick replies on a channel without buttons: numbered options in the text, and a reply "2"
answering as the second option would (the engine's reply matching knows what it offered)."""

from __future__ import annotations

import pytest

from bot.engine.sprint import Route, chosen_option, numbered
from tests.support.harness import Bot, MakeBot

ASK = """
language: es
nodes:
  - id: ask
    send_message:
      text: "¿Recibiste el pedido?"
      quick_replies: ["Sí", "No", "Más tarde"]
    next: answer
  - id: answer
    wait_for_reply:
      result: delivery
      cases:
        - {has_any_word: [si], category: Received, next: thanks}
        - {has_any_word: ["no"], category: Missing, next: sorry}
      other: {category: Other, next: thanks}
  - id: thanks
    send_message: {text: "Gracias"}
  - id: sorry
    send_message: {text: "Lo sentimos"}
"""


def test_options_are_numbered_under_the_text() -> None:
    assert numbered("¿Y?", ["Sí", "No"]) == "¿Y?\n\n1. Sí\n2. No"
    assert numbered("", ["Sí"]) == "1. Sí"


@pytest.mark.parametrize(
    ("reply", "picked"),
    [("2", "No"), (" 2 ", "No"), ("2.", "No"), ("2)", "No"), ("#1", "Sí"), ("٢", "No")],
)
def test_a_number_picks_its_option(reply: str, picked: str) -> None:
    assert chosen_option(reply, ["Sí", "No"]) == picked


@pytest.mark.parametrize("reply", ["0", "3", "2 por favor", "dos", "", "12"])
def test_anything_else_picks_nothing(reply: str) -> None:
    assert chosen_option(reply, ["Sí", "No"]) is None
    assert chosen_option("1", None) is None and chosen_option("1", []) is None


@pytest.fixture
async def bot(make_bot: MakeBot) -> Bot:
    bot = await make_bot()
    bot.registry.routes = [Route("cap", ("tel",))]  # a channel without buttons (the console)
    bot.write("ask", ASK)
    return bot


async def test_without_buttons_a_reply_number_picks_the_option(bot: Bot) -> None:
    cid = await bot.contact()
    await bot.start(cid, "ask")
    await bot.drain()
    [question] = bot.channel.sent
    assert question["text"] == "¿Recibiste el pedido?\n\n1. Sí\n2. No\n3. Más tarde"
    assert "quick_replies" not in question
    await bot.reply(cid, "2")
    await bot.drain()
    assert bot.channel.texts[-1] == "Lo sentimos"
    [run] = await bot.runs(cid)
    assert run["results"]["delivery"]["category"] == "Missing"
    assert run["results"]["delivery"]["input"] == "No"
    inbound = await bot.messages(cid, "in")
    assert [m["text"] for m in inbound] == ["2"]  # the history keeps what the contact wrote


async def test_a_number_out_of_range_or_typed_words_route_as_usual(bot: Bot) -> None:
    cid = await bot.contact()
    await bot.start(cid, "ask")
    await bot.drain()
    await bot.reply(cid, "4")
    await bot.drain()
    [run] = await bot.runs(cid)
    assert run["results"]["delivery"]["category"] == "Other"
    other = await bot.contact("tel:+15550002")
    await bot.start(other, "ask")
    await bot.drain()
    await bot.reply(other, "no")
    await bot.drain()
    assert bot.channel.texts[-1] == "Lo sentimos"


async def test_with_buttons_the_options_stay_buttons_and_a_number_is_text(bot: Bot) -> None:
    bot.registry.routes = [Route("cap", ("tel",), buttons=3)]
    bot.registry.reload()
    cid = await bot.contact()
    await bot.start(cid, "ask")
    await bot.drain()
    [question] = bot.channel.sent
    assert question["text"] == "¿Recibiste el pedido?"
    assert question["quick_replies"] == ["Sí", "No", "Más tarde"]
    await bot.reply(cid, "2")
    await bot.drain()
    [run] = await bot.runs(cid)
    assert run["results"]["delivery"]["category"] == "Other"


async def test_more_options_than_buttons_but_a_list_stays_a_list(bot: Bot) -> None:
    bot.registry.routes = [Route("cap", ("tel",), buttons=2, list_rows=10)]
    bot.registry.reload()
    cid = await bot.contact()
    await bot.start(cid, "ask")
    await bot.drain()
    assert bot.channel.sent[0]["quick_replies"] == ["Sí", "No", "Más tarde"]
    bot.registry.routes = [Route("cap", ("tel",), buttons=2)]
    bot.registry.reload()
    other = await bot.contact("tel:+15550002")
    await bot.start(other, "ask")
    await bot.drain()
    assert "quick_replies" not in bot.channel.sent[-1]
