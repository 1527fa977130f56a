"""The webhook's fast lane (``inbound.lua``, bot/work/lane.py): a contact whose lock is free is
claimed by the webhook's own call and handed to this process's worker, with a timer that
signals it again if the process dies holding it. On real Valkey, driven step by step."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any, ClassVar

from aiohttp import web
from redis.asyncio import Redis

from bot.core.clock import ManualClock
from bot.store import Claim, Commit
from bot.store.keys import READY, TIMERS, contact_key, signal_timer
from bot.work.ingest import Ingest
from bot.work.worker import Worker, WorkerSettings
from channels.protocol import Message
from tests.support.harness import Bot, MakeBot
from tests.support.waiting import wait_for

ECHO = """\
nodes:
  - id: ask
    wait_for_reply: {}
    next: answer
  - id: answer
    send_message: {text: "got @input.text"}
    next: ask
"""
URN = "tel:+15550001"
AT = 1_767_225_600.0  # the harness clock's start: replies are fresh


def message(external_id: str, text: str = "hola", urn: str = URN, at: float = AT) -> Message:
    return Message("cap", urn, external_id, at, text)


def ingest_of(bot: Bot, worker: Worker | None = None) -> Ingest:
    """The webhook's ingest handing its claims to ``worker`` (its lane opened, as a running
    worker's is)."""
    worker = worker or bot.worker
    worker.lane.open = True
    s = worker.settings
    return Ingest(bot.store, bot.channels, bot.clock.now, worker.lane, s.lock_ttl_ms, s.max_events)


async def waiting(bot: Bot, urn: str = URN) -> str:
    """A contact waiting in the echo flow (its start applied, the ready stream empty)."""
    cid = await bot.contact(urn)
    await bot.start(cid, "echo")
    await bot.drain()
    return cid


async def ready_signals(bot: Bot) -> list[str]:
    entries = await bot.redis.xrange(READY)
    return [fields[b"c"].decode() for _, fields in entries]


async def signal_timers(bot: Bot) -> list[str]:
    """The timers that only signal a contact (the flow's own expiry timers left out)."""
    return [t for t in await bot.timers() if "|signal|" in t]


def in_hand(worker: Worker) -> list[Claim]:
    """The claims waiting in the worker's lane (looked at, left there)."""
    return list(worker.lane._waiting)


async def test_a_free_contact_is_claimed_by_the_webhook_and_committed_by_the_worker(
    make_bot: MakeBot,
) -> None:
    bot = await make_bot()
    bot.write("echo", ECHO)
    cid = await waiting(bot)
    outcome = await ingest_of(bot).accept([message("wamid.1", "uno")])
    assert outcome.queued == 1
    (claim,) = in_hand(bot.worker)
    assert (claim.cid, [e["text"] for e in claim.events]) == (cid, ["uno"])
    assert claim.contact is not None and claim.contact["uuid"] == cid
    assert json.loads(claim.session_raw)["wait"]  # the session as stored
    # no ready signal: the lock is ours, and a timer covers it until the commit
    assert await ready_signals(bot) == []
    assert await bot.redis.get(contact_key(cid, "lock")) == claim.token.encode()
    assert claim.timer == signal_timer(cid, claim.token)
    assert await signal_timers(bot) == [claim.timer]

    assert await bot.worker.lane_step()
    assert bot.worker.lane.in_hand == 0
    assert await bot.queue_len(cid) == 0
    assert not await bot.redis.exists(contact_key(cid, "lock"))
    assert await signal_timers(bot) == []  # the commit removed it
    await bot.drain()  # the send
    assert bot.channel.texts == ["got uno"]


async def test_a_held_lock_or_no_room_signals_the_ready_stream(make_bot: MakeBot) -> None:
    bot = await make_bot()
    bot.write("echo", ECHO)
    held = await waiting(bot)
    other = await waiting(bot, "tel:+15550002")
    ingest = ingest_of(bot)
    # another worker holds the first contact
    (theirs,) = await bot.store.claim([held], 60_000, 100)
    assert theirs is not None
    await ingest.accept([message("wamid.1", "uno")])
    assert in_hand(bot.worker) == [] and await ready_signals(bot) == [held]
    assert await bot.redis.get(contact_key(held, "lock")) == theirs.token.encode()
    # this process has no room: the free contact is signalled, not locked
    bot.worker.lane.limit = 0
    await ingest.accept([message("wamid.2", "dos", "tel:+15550002")])
    assert in_hand(bot.worker) == [] and await ready_signals(bot) == [held, other]
    assert not await bot.redis.exists(contact_key(other, "lock"))
    assert bot.worker.lane.in_hand == 0  # the room reserved was given back

    await bot.store.commit([Commit(theirs.cid, theirs.token, 0)])
    await bot.drain()
    assert sorted(bot.channel.texts) == ["got dos", "got uno"]


async def test_a_redelivery_creates_and_queues_nothing(make_bot: MakeBot) -> None:
    bot = await make_bot()
    bot.write("echo", ECHO)
    ingest = ingest_of(bot)
    first = await ingest.accept([message("wamid.1", "uno"), message("wamid.1", "uno")])
    again = await ingest.accept([message("wamid.1", "uno")])
    assert (first.queued, first.duplicates, again.queued, again.duplicates) == (1, 1, 0, 1)
    (claim,) = in_hand(bot.worker)
    assert [e["text"] for e in claim.events] == ["uno"]
    assert await bot.queue_len(claim.cid) == 1
    # a redelivery for a URN never seen creates no contact
    await bot.redis.set("chasqui:seen:in:cap:wamid.9", "1")
    late = await ingest.accept([message("wamid.9", "x", "tel:+15550009")])
    assert late.duplicates == 1
    assert await bot.store.contact_id_for_urn("tel:+15550009") is None


async def test_new_contact_is_said_on_its_first_event_only(make_bot: MakeBot) -> None:
    bot = await make_bot()
    ingest = ingest_of(bot)
    await ingest.accept([message("wamid.1", "uno"), message("wamid.2", "dos")])
    (claim,) = in_hand(bot.worker)
    assert [e.get("new_contact") for e in claim.events] == [True, None]
    assert claim.contact is not None and claim.contact["urns"] == [URN]
    assert await bot.worker.lane_step()
    await ingest.accept([message("wamid.3", "tres")])
    (claim,) = in_hand(bot.worker)
    assert [e.get("new_contact") for e in claim.events] == [None]


async def test_two_messages_of_one_contact_in_one_webhook_keep_their_order(
    make_bot: MakeBot,
) -> None:
    bot = await make_bot()
    bot.write("echo", ECHO)
    cid = await waiting(bot)
    mine = await waiting(bot, "tel:+15550002")
    ingest = ingest_of(bot)
    await ingest.accept(
        [
            message("wamid.1", "uno"),
            message("wamid.2", "a", "tel:+15550002"),
            message("wamid.3", "dos"),
            message("wamid.4", "b", "tel:+15550002"),
        ]
    )
    # one claim per contact, each with both its events in arrival order
    claims = in_hand(bot.worker)
    assert [(c.cid, [e["text"] for e in c.events]) for c in claims] == [
        (cid, ["uno", "dos"]),
        (mine, ["a", "b"]),
    ]
    assert await bot.worker.lane_step()
    await bot.drain()
    texts = [m["text"] for m in await bot.messages(cid)]
    assert texts == ["got uno", "got dos"]
    assert [m["text"] for m in await bot.messages(mine)] == ["got a", "got b"]
    assert await ready_signals(bot) == []


async def test_a_claim_whose_process_dies_is_signalled_by_its_timer(
    redis: Redis, tmp_path: Path
) -> None:
    settings = WorkerSettings(lock_ttl_ms=30)
    # the clock at the real time: the flow's own expiry timer is due days after the claim's
    clock = ManualClock(time.time())
    bot = await Bot(redis, tmp_path / "flows", clock=clock, settings=settings).setup()
    try:
        bot.write("echo", ECHO)
        cid = await waiting(bot)
        dying = bot.new_worker()
        await ingest_of(bot, dying).accept([message("wamid.1", "uno", at=clock.now())])
        (dead,) = in_hand(dying)  # ... and the process dies before committing it
        due = await redis.zscore(TIMERS, dead.timer)
        assert due is not None
        before = float((await redis.time())[0])
        assert before - 1 <= due <= before + 1 + settings.lock_ttl_ms / 1000

        async def gone() -> bool:
            return not await redis.exists(contact_key(cid, "lock"))

        await wait_for(gone, "the lock to expire")
        await bot.drain()
        assert await bot.queue_len(cid) == 1 and bot.channel.sent == []  # no signal yet
        assert await bot.store.fire_timers(due) == 1  # the timer, once due, signals it
        await bot.drain()
        assert bot.channel.texts == ["got uno"]
        assert await bot.queue_len(cid) == 0 and await signal_timers(bot) == []

        # the dead process wakes up and commits: refused, nothing applied twice
        await dying.lane_step()
        await bot.drain()
        assert bot.channel.texts == ["got uno"]
        assert len(await bot.messages(cid, "in")) == 1
    finally:
        await bot.close()


async def test_a_webhook_call_does_not_hold_up_the_lane(
    make_bot: MakeBot, aiohttp_server: Any
) -> None:
    answer = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await answer.wait()
        return web.json_response({"n": 7})

    app = web.Application()
    app.router.add_get("/n", slow)
    server = await aiohttp_server(app)
    bot = await make_bot()
    bot.write("echo", ECHO)
    bot.write(
        "hook",
        f"""
        nodes:
          - id: ask
            wait_for_reply: {{}}
            next: call
          - id: call
            call_webhook: {{url: "http://127.0.0.1:{server.port}/n"}}
            next: say
          - id: say
            send_message: {{text: "call @webhook.n"}}
        """,
    )
    calling = await bot.contact("tel:+15550009")
    await bot.start(calling, "hook")
    await bot.drain()
    cid = await waiting(bot)
    ingest = ingest_of(bot)
    await ingest.accept([message("wamid.1", "x", "tel:+15550009")])
    assert await bot.worker.lane_step()  # its webhook call now waits for the answer
    await ingest.accept([message("wamid.2", "uno")])
    assert await bot.worker.lane_step()  # not behind that call
    assert [m["text"] for m in await bot.messages(cid)] == ["got uno"]
    assert bot.worker.lane.in_hand == 1 and await bot.queue_len(calling) == 1

    answer.set()

    async def settled() -> bool:
        return bot.worker.lane.in_hand == 0

    await wait_for(settled, "the webhook call's contact to be committed")
    assert [m["text"] for m in await bot.messages(calling)] == ["call 7"]
    assert await bot.queue_len(calling) == 0 and await signal_timers(bot) == []


class FailingWorker(Worker):
    """A worker whose commits fail (as when Redis answers an error)."""

    async def _commit(self, commits: list[Commit]) -> None:
        raise RuntimeError("commit failed")


async def test_a_batch_that_cannot_be_committed_is_released_with_a_signal(
    make_bot: MakeBot,
) -> None:
    bot = await make_bot()
    bot.write("echo", ECHO)
    cid = await waiting(bot)
    failing = bot.new_worker(cls=FailingWorker)
    await ingest_of(bot, failing).accept([message("wamid.1", "uno")])
    assert await failing.lane_step()
    assert failing.lane.in_hand == 0
    # released: unlocked, its timer gone, its event still queued and signalled
    assert not await bot.redis.exists(contact_key(cid, "lock"))
    assert await signal_timers(bot) == [] and await ready_signals(bot) == [cid]
    assert await bot.queue_len(cid) == 1
    await bot.drain()
    assert bot.channel.texts == ["got uno"]


async def test_stopping_the_worker_commits_the_claims_in_hand(make_bot: MakeBot) -> None:
    bot = await make_bot()
    bot.write("echo", ECHO)
    cid = await waiting(bot)
    await bot.worker.start()
    try:
        await ingest_of(bot).accept([message("wamid.1", "uno")])
    finally:
        await bot.worker.stop()
    assert bot.worker.lane.in_hand == 0 and not bot.worker.lane.open
    assert await bot.queue_len(cid) == 0
    assert not await bot.redis.exists(contact_key(cid, "lock"))
    assert [m["text"] for m in await bot.messages(cid)] == ["got uno"]
    assert await signal_timers(bot) == []
    assert bot.worker.lane.reserve(1) == 0  # a stopped worker takes no claim


class StuckWorker(Worker):
    """A worker that never finishes deciding the contacts in ``stuck``."""

    stuck: ClassVar[set[str]] = set()

    async def _decide_all(
        self, claims: list[Claim]
    ) -> tuple[list[Commit], list[tuple[Claim, asyncio.Task[Commit]]]]:
        if any(claim.cid in self.stuck for claim in claims):
            await asyncio.Event().wait()
        return await super()._decide_all(claims)


async def test_stopping_releases_the_claims_it_could_not_commit(make_bot: MakeBot) -> None:
    bot = await make_bot()
    bot.write("echo", ECHO)
    stuck = await waiting(bot)
    other = await waiting(bot, "tel:+15550002")
    # stop() waits min(TTL / 2, 10 s) for the lane: 0.2 s here; no event loop reads the ready
    # stream (consumers=0): what the lane released stays there for the test to see
    settings = WorkerSettings(lock_ttl_ms=400, consumers=0)
    worker = bot.new_worker(settings=settings, cls=StuckWorker)
    StuckWorker.stuck = {stuck}
    await worker.start()
    ingest = ingest_of(bot, worker)
    await ingest.accept([message("wamid.1", "uno")])

    async def taken() -> bool:
        return worker.lane.in_hand == 1 and in_hand(worker) == []

    await wait_for(taken, "the lane to take the stuck contact")
    await ingest.accept([message("wamid.2", "dos", "tel:+15550002")])
    assert [c.cid for c in in_hand(worker)] == [other]  # waits behind the stuck one
    (claim,) = in_hand(worker)
    await worker.stop()
    assert worker.lane.in_hand == 0
    # the waiting claim was released: unlocked, its timer gone, its event signalled
    assert not await bot.redis.exists(contact_key(other, "lock"))
    assert claim.timer not in await signal_timers(bot)
    assert await ready_signals(bot) == [other] and await bot.queue_len(other) == 1
    # the one stuck mid-sprint keeps its timer: it is signalled when its lock expires
    assert [t for t in await signal_timers(bot) if t.startswith(stuck)] != []
    await bot.drain()
    assert [m["text"] for m in await bot.messages(other)] == ["got dos"]
