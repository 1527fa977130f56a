"""The sender: retries on a timer without breaking a contact's order, monotonic statuses."""

from __future__ import annotations

from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from bot.store import Inbound
from bot.store.keys import SENDQ, TIMERS, contact_key
from channels.protocol import SendResult
from tests.support.harness import Bot, CapturingChannel, MakeBot

FLOW = """
nodes:
  - id: one
    send_message: {text: "first"}
    next: two
  - id: two
    send_message: {text: "second"}
    on_failure: noted
    next: ask
  - id: ask
    wait_for_reply: {}
  - id: noted
    set_result: {name: failed, value: "yes"}
"""


class FlakyChannel(CapturingChannel):
    """Asks to retry the first ``busy`` attempts, then accepts with a provider id."""

    busy = 2

    async def send(self, message: dict[str, Any]) -> SendResult:
        self.sent.append(message)
        if self.busy > 0:
            self.busy -= 1
            return SendResult(False, error={"code": "131056"}, retry_after=30)
        return SendResult(True, external_id=f"wamid.{len(self.sent)}")


@pytest.fixture
async def bot(make_bot: MakeBot) -> Bot:
    b = await make_bot()
    b.channels["cap"] = FlakyChannel("cap", b.store)
    b.worker = b.new_worker()
    b.write("two", FLOW)
    return b


async def test_a_retry_holds_the_contacts_line_until_its_timer(bot: Bot) -> None:
    cid = await bot.contact()
    await bot.start(cid, "two")
    await bot.drain()
    channel = bot.channels["cap"]
    assert channel.texts == ["first"]  # "second" waits behind "first"
    (member,) = [m.decode() for m in await bot.redis.zrange(TIMERS, 0, -1) if b"|send|" in m]
    assert member.startswith(f"{cid}|send|")
    states = {m["text"]: m for m in await bot.messages(cid)}
    assert states["first"]["status"] == "queued" and states["first"]["attempts"] == 1
    assert states["first"]["last_error"] == {"code": "131056"}

    await bot.fire(29)
    await bot.drain()
    assert channel.texts == ["first"]  # not before the retry time
    await bot.fire(1)
    await bot.drain()
    assert channel.texts == ["first", "first"]  # the second attempt, asked to retry again
    await bot.fire(30)
    await bot.drain()
    assert channel.texts == ["first", "first", "first", "second"]
    sent = await bot.messages(cid)
    assert [(m["text"], m["status"], m["attempts"]) for m in sent] == [
        ("first", "sent", 3),
        ("second", "sent", 1),
    ]
    assert sent[0]["external_id"] == "wamid.3"


async def test_too_many_retries_fail_the_message_and_take_on_failure(bot: Bot) -> None:
    channel = bot.channels["cap"]
    channel.busy = 100  # type: ignore[attr-defined]
    cid = await bot.contact()
    await bot.start(cid, "two")
    await bot.drain()
    for _ in range(7):
        await bot.fire(30)
        await bot.drain()
    out = await bot.messages(cid)
    assert out[0]["status"] == "failed" and out[0]["attempts"] == 8
    assert out[0]["error"] == {"code": "131056"}
    # the line moves on: "second" is tried next (and is also asked to retry)
    assert channel.texts[-1] == "second"


async def test_statuses_apply_monotonically_in_any_order(bot: Bot) -> None:
    bot.channels["cap"].busy = 0  # type: ignore[attr-defined]
    cid = await bot.contact()
    await bot.start(cid, "two")
    await bot.drain()
    first, second = await bot.messages(cid)
    wamid = first["external_id"]
    store = bot.store
    assert await store.apply_statuses("cap", [(wamid, "read", 1000.0, None)]) == ["read"]
    assert await store.apply_statuses("cap", [(wamid, "delivered", 999.0, None)]) == ["ignored"]
    late_failure = (wamid, "failed", 1001.0, {"code": 131047})
    assert await store.apply_statuses("cap", [late_failure]) == ["ignored"]
    assert await store.apply_statuses("cap", [("wamid.nope", "read", 1.0, None)]) == ["unknown"]
    first = (await bot.messages(cid))[0]
    assert first["status"] == "read"
    assert first["read_on"] == 1000.0 and first["delivered_on"] == 999.0

    # a failure after "sent" is final, later statuses don't undo it, and the flow hears of it
    wamid2 = second["external_id"]
    error = {"code": 131047, "title": "Re-engagement message"}
    assert await store.apply_statuses("cap", [(wamid2, "failed", 1002.0, error)]) == ["failed"]
    assert await store.apply_statuses("cap", [(wamid2, "delivered", 1003.0, None)]) == ["ignored"]
    await bot.drain()
    second = (await bot.messages(cid))[1]
    assert second["status"] == "failed"
    assert second["error"] == {"code": 131047, "title": "Re-engagement message"}
    (run,) = await bot.runs(cid)
    assert run["results"]["failed"]["value"] == "yes"  # took on_failure while waiting
    assert run["errors"][0]["code"] == 131047


async def test_rate_limit_is_shared_and_spaces_sends(bot: Bot) -> None:
    waits = [await bot.store.rate_wait("pn1", per_second=10, burst=2) for _ in range(4)]
    assert waits[:2] == [0.0, 0.0]  # the burst goes at once
    assert 0.0 < waits[2] <= 0.1 + 1e-3  # then one per 100 ms
    assert waits[3] > 0.0
    assert await bot.store.rate_wait("pn2", per_second=10, burst=2) == 0.0  # other number


async def test_inbound_dedups_within_ttl(bot: Bot) -> None:
    cid = await bot.contact()
    event = {"type": "reply", "text": "x", "at": 0.0}

    def msg(wamid: str) -> Inbound:
        return Inbound(f"wa:{wamid}", 60, "tel:+15550001", "", 0.0, event)

    outcomes, _ = await bot.store.inbound([msg("wamid.A"), msg("wamid.A")], 0, 60_000, 100)
    assert outcomes == [(cid, False), None]
    outcomes, _ = await bot.store.inbound([msg("wamid.A"), msg("wamid.B")], 0, 60_000, 100)
    assert outcomes == [None, (cid, False)]
    assert await bot.queue_len(cid) == 2


async def test_a_new_signal_does_not_bypass_a_held_retry(bot: Bot) -> None:
    cid = await bot.contact()
    await bot.start(cid, "two")
    await bot.drain()
    channel = bot.channels["cap"]
    assert channel.texts == ["first"]  # asked to retry in 30 s
    await bot.redis.xadd(SENDQ, {"c": cid})  # e.g. a commit queued another message
    await bot.drain()
    assert channel.texts == ["first"]  # the line stays held until the retry time
    await bot.fire(30)
    await bot.drain()
    assert channel.texts == ["first", "first"]


async def test_a_message_already_sent_is_not_sent_again(bot: Bot) -> None:
    bot.channels["cap"].busy = 0  # type: ignore[attr-defined]
    cid = await bot.contact()
    await bot.start(cid, "two")
    await bot.drain()
    channel = bot.channels["cap"]
    assert channel.texts == ["first", "second"]
    # a sender whose lock expired recorded its sends but never cleared the outbox
    first, second = await bot.messages(cid)
    await bot.redis.rpush(contact_key(cid, "outbox"), first["uuid"], second["uuid"])
    await bot.redis.xadd(SENDQ, {"c": cid})
    await bot.drain()
    assert channel.texts == ["first", "second"]  # nothing twice
    assert await bot.redis.llen(contact_key(cid, "outbox")) == 0


class StoreDownChannel(CapturingChannel):
    """A channel whose own Redis write fails once (like the console channel in an outage)."""

    down = 1

    async def send(self, message: dict[str, Any]) -> SendResult:
        self.sent.append(message)
        if self.down > 0:
            self.down -= 1
            raise RedisConnectionError("Connection closed by server.")
        return SendResult(True, external_id=f"id.{len(self.sent)}")


async def test_a_channel_meeting_an_unreachable_redis_retries_instead_of_failing(
    bot: Bot,
) -> None:
    bot.channels["cap"] = StoreDownChannel("cap", bot.store)
    bot.worker = bot.new_worker()
    cid = await bot.contact()
    await bot.start(cid, "two")
    await bot.drain()
    [first, second] = await bot.messages(cid)
    assert first["status"] == "queued" and first["attempts"] == 1
    assert first["last_error"]["code"] == "store_unavailable"
    assert second["status"] == "queued"  # its line waits behind the retry
    await bot.fire(2)
    await bot.drain()
    sent = await bot.messages(cid)
    assert [(m["text"], m["status"]) for m in sent] == [("first", "sent"), ("second", "sent")]
    assert (await bot.session(cid))["frames"][0]["run"]["errors"] == []
