"""Inline sends: a commit that finds its contact's send line free takes it, and the worker sends
at once -- no send stream. The stream still carries busy lines, held lines, a process without
room, retries and the recovery of a worker that died holding a line (its timer)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from bot.store.keys import SENDQ, TIMERS, contact_key
from bot.work.worker import Worker, WorkerSettings
from channels.protocol import SendResult
from tests.support.harness import Bot, CapturingChannel, MakeBot

ONE = """
nodes:
  - id: hello
    send_message: {text: "hello"}
    next: ask
  - id: ask
    wait_for_reply: {}
    next: echo
  - id: echo
    send_message: {text: "got @input.text"}
    next: ask
"""

TWO = """
nodes:
  - id: one
    send_message: {text: "first"}
    next: two
  - id: two
    send_message: {text: "second"}
    next: ask
  - id: ask
    wait_for_reply: {}
"""


class GatedChannel(CapturingChannel):
    """Holds each send until ``gate`` is set (a Graph API call in flight); ``retry`` texts are
    asked to be retried in 30 s."""

    def __init__(self, name: str, store: Any) -> None:
        super().__init__(name, store)
        self.gate = asyncio.Event()
        self.gate.set()
        self.entered = asyncio.Event()
        self.retry: set[str] = set()

    async def send(self, message: dict[str, Any]) -> SendResult:
        self.entered.set()
        await self.gate.wait()
        if message.get("text") in self.retry:
            self.sent.append(message)
            return SendResult(False, error={"code": "131056"}, retry_after=30)
        return await super().send(message)


@pytest.fixture
async def bot(make_bot: MakeBot) -> Bot:
    b = await make_bot()
    b.channels["cap"] = GatedChannel("cap", b.store)
    b.worker = b.new_worker()
    b.write("one", ONE)
    b.write("two", TWO)
    return b


def gated(bot: Bot) -> GatedChannel:
    channel = bot.channels["cap"]
    assert isinstance(channel, GatedChannel)
    return channel


async def process_ready(bot: Bot, worker: Worker | None = None) -> None:
    """One pass of the event half only: the send stream is left as the commits made it."""
    entries = await bot.store.read_ready("t", 100, None)
    await (worker or bot.worker).process(entries)


async def send_timers(bot: Bot, cid: str) -> list[str]:
    return [t for t in await bot.timers() if t.startswith(f"{cid}|send|")]


async def test_a_free_line_is_taken_by_the_commit_and_sent_without_the_stream(bot: Bot) -> None:
    channel = gated(bot)
    channel.gate.clear()
    cid = await bot.contact()
    await bot.start(cid, "one")
    await process_ready(bot)
    await asyncio.wait_for(channel.entered.wait(), 5)
    # mid-send: the line is ours (the claim's token), covered by a timer, and no stream entry
    token = (await bot.redis.get(contact_key(cid, "sendlock"))).decode()
    assert await send_timers(bot, cid) == [f"{cid}|send|{token}"]
    assert await bot.redis.xlen(SENDQ) == 0

    channel.gate.set()
    assert await bot.worker.sender.settle()
    assert channel.texts == ["hello"]
    (hello,) = await bot.messages(cid)
    assert (hello["status"], hello["attempts"]) == ("sent", 1)
    assert hello["external_id"] == f"ext-{hello['uuid']}"
    # recorded in one script: indexed, dropped from the outbox, lock and timer gone
    assert await bot.store.apply_statuses("cap", [(hello["external_id"], "read", 1.0, None)]) == [
        "read"
    ]
    assert await bot.redis.llen(contact_key(cid, "outbox")) == 0
    assert not await bot.redis.exists(contact_key(cid, "sendlock"))
    assert await send_timers(bot, cid) == []
    assert await bot.redis.xlen(SENDQ) == 0


async def test_a_busy_line_goes_through_the_stream(bot: Bot) -> None:
    cid = await bot.contact()
    await bot.redis.set(contact_key(cid, "sendlock"), "another-sender", px=60_000)
    await bot.start(cid, "one")
    await process_ready(bot)
    assert not await bot.worker.sender.settle()  # nothing was taken inline
    assert gated(bot).texts == []
    assert await bot.redis.xlen(SENDQ) == 1
    # the holder is gone (its lock expired): the stream entry sends it
    await bot.redis.delete(contact_key(cid, "sendlock"))
    await bot.drain()
    assert gated(bot).texts == ["hello"]


async def test_no_room_goes_through_the_stream_and_the_room_bounds_lines_in_hand(
    bot: Bot,
) -> None:
    channel = gated(bot)
    channel.gate.clear()
    worker = bot.new_worker(settings=WorkerSettings(inline_sends=2))
    cids = [await bot.contact(f"tel:+1555000{i}") for i in range(5)]
    for cid in cids:
        await bot.start(cid, "one")
    await process_ready(bot, worker)
    held = [await bot.redis.get(contact_key(cid, "sendlock")) for cid in cids]
    assert sum(1 for h in held if h) == 2  # two lines in hand, the others signalled
    assert await bot.redis.xlen(SENDQ) == 3
    channel.gate.set()
    await bot.drain(worker)
    assert sorted(channel.texts) == ["hello"] * 5
    assert worker.sender._in_hand == 0

    none = bot.new_worker(settings=WorkerSettings(inline_sends=0))
    await bot.reply(cids[0], "hi")
    await process_ready(bot, none)
    assert not await none.sender.settle()
    assert await bot.redis.xlen(SENDQ) == 1


async def test_a_retry_and_a_held_line_go_through_the_stream(bot: Bot) -> None:
    channel = gated(bot)
    channel.retry = {"hello"}
    cid = await bot.contact()
    await bot.start(cid, "one")
    await bot.drain()
    assert channel.texts == ["hello"]  # inline, asked to retry: the line is held by its timer
    (retry,) = await send_timers(bot, cid)
    (hello,) = await bot.messages(cid)
    assert retry == f"{cid}|send|{hello['uuid']}"
    # a reply's message queues behind the held one: no inline take, a signal that holds
    await bot.reply(cid, "x")
    await process_ready(bot)
    assert not await bot.worker.sender.settle()
    assert await bot.redis.xlen(SENDQ) == 1
    await bot.drain()
    assert channel.texts == ["hello"]
    channel.retry = set()
    await bot.fire(31)
    await bot.drain()
    assert channel.texts == ["hello", "hello", "got x"]
    assert [m["status"] for m in await bot.messages(cid)] == ["sent", "sent"]


async def test_a_worker_that_dies_holding_a_line_is_covered_by_its_timer(bot: Bot) -> None:
    dead = bot.new_worker()
    dead.sender.hand_over = lambda offered: None  # type: ignore[method-assign]  # dies here
    cid = await bot.contact()
    await bot.start(cid, "one")
    await process_ready(bot, dead)
    token = (await bot.redis.get(contact_key(cid, "sendlock"))).decode()
    (cover,) = await send_timers(bot, cid)
    assert cover == f"{cid}|send|{token}"
    assert await bot.redis.xlen(SENDQ) == 0
    # a signal while the dead holder's lock lives is dropped, but re-arms the cover
    await bot.redis.xadd(SENDQ, {"c": cid})
    await bot.drain()
    assert gated(bot).texts == []
    assert await send_timers(bot, cid) == [cover]

    # its lock expires (as if its TTL ran out); the timer, due by then, signals the line
    pttl = await bot.redis.pttl(contact_key(cid, "sendlock"))
    assert 0 < pttl <= 60_000
    await bot.redis.delete(contact_key(cid, "sendlock"))
    await bot.redis.zrem(TIMERS, *[t for t in await bot.timers() if "|expire|" in t])
    assert await bot.store.fire_timers(time.time() + 61) == 1  # the cover
    assert await bot.redis.xlen(SENDQ) == 1
    await bot.drain()
    assert gated(bot).texts == ["hello"]
    assert [m["status"] for m in await bot.messages(cid)] == ["sent"]


async def test_a_lock_lost_mid_send_sends_nothing_twice(bot: Bot) -> None:
    channel = gated(bot)
    channel.gate.clear()
    cid = await bot.contact()
    await bot.start(cid, "one")
    await process_ready(bot)
    await asyncio.wait_for(channel.entered.wait(), 5)
    # mid-send the lock expires and another sender takes the (still queued) line: the holder
    # records what it sent and leaves the other's lock alone
    await bot.redis.set(contact_key(cid, "sendlock"), "other", px=60_000)
    channel.gate.set()
    assert await bot.worker.sender.settle()
    assert (await bot.redis.get(contact_key(cid, "sendlock"))) == b"other"
    assert await bot.redis.llen(contact_key(cid, "outbox")) == 0
    # the cover timer, the stream: nothing left to send
    await bot.redis.delete(contact_key(cid, "sendlock"))
    await bot.redis.xadd(SENDQ, {"c": cid})
    await bot.store.fire_timers(time.time() + 61)
    await bot.drain()
    assert channel.texts == ["hello"]


async def test_a_status_for_an_earlier_message_is_found_while_the_line_still_sends(
    bot: Bot,
) -> None:
    channel = gated(bot)
    cid = await bot.contact()
    await bot.start(cid, "two")
    sent_first = asyncio.Event()

    async def hold_second(message: dict[str, Any]) -> SendResult:
        if message["text"] == "second":
            sent_first.set()
            await channel.gate.wait()
        return await CapturingChannel.send(channel, message)

    channel.send = hold_second  # type: ignore[method-assign]
    channel.gate.clear()
    await process_ready(bot)
    await asyncio.wait_for(sent_first.wait(), 5)
    first = channel.sent[0]
    # the first message's id is indexed before the line's outcome is recorded
    wamid = f"ext-{first['uuid']}"
    assert await bot.store.apply_statuses("cap", [(wamid, "delivered", 5.0, None)]) == ["delivered"]
    channel.gate.set()
    assert await bot.worker.sender.settle()
    one, two = await bot.messages(cid)
    assert one["status"] == "delivered"  # the later "sent" record does not lower it
    assert one["external_id"] == wamid and one["attempts"] == 1
    assert two["status"] == "sent"
