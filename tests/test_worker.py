"""The worker on real Valkey: order and exactly-once across consumers, restarts, lost locks."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from redis.asyncio import Redis

from bot.store import Commit
from bot.store.keys import READY, SENDQ, contact_key
from bot.work.webhook_calls import WebhookCaller
from bot.work.worker import Worker, WorkerSettings
from tests.support.harness import Bot, MakeBot
from tests.support.waiting import wait_for

AiohttpServer = Any  # the pytest-aiohttp ``aiohttp_server`` factory

ECHO = """
nodes:
  - id: ask
    wait_for_reply: {}
    next: echo
  - id: echo
    send_message: {text: "got @input.text"}
    next: ask
"""


class CountingWorker(Worker):
    """A worker that counts the events it committed (lost-lock commits do not count)."""

    committed = 0

    async def _commit(self, commits: list[Commit]) -> None:
        results = await self.store.commit(commits)
        self.committed += sum(c.consumed for c, r in zip(commits, results, strict=True) if r >= 0)


@pytest.fixture
async def bot(make_bot: MakeBot) -> Bot:
    # small claims and reads so that two consumers really contend for the same contact
    return await make_bot(settings=WorkerSettings(max_events=7))


async def _pending(bot: Bot) -> tuple[int, int]:
    ready = await bot.redis.xpending(READY, "workers")
    sends = await bot.redis.xpending(SENDQ, "senders")
    return int(ready["pending"]), int(sends["pending"])


async def test_two_workers_apply_one_contacts_replies_once_and_in_order(bot: Bot) -> None:
    bot.write("echo", ECHO)
    a = bot.new_worker(cls=CountingWorker)
    b = bot.new_worker(cls=CountingWorker)
    cid = await bot.contact()
    await bot.start(cid, "echo")
    for i in range(200):
        await bot.reply(cid, str(i))

    await asyncio.gather(bot.drain(a, "a", batch=5), bot.drain(b, "b", batch=5))

    expected = [f"got {i}" for i in range(200)]
    assert bot.channel.texts == expected  # delivered once each, in order
    assert await bot.texts(cid) == expected  # recorded once each, in order
    incoming = await bot.messages(cid, "in")
    assert [m["text"] for m in incoming] == [str(i) for i in range(200)]
    assert all(m["status"] == "handled" for m in incoming)
    assert all(m["status"] == "sent" for m in await bot.messages(cid))
    assert a.committed + b.committed == 201
    assert a.committed > 0 and b.committed > 0  # both consumers did part of the work
    assert await bot.queue_len(cid) == 0
    assert await _pending(bot) == (0, 0)
    (frame,) = (await bot.session(cid))["frames"]
    assert len(frame["run"]["path"]) == 1 + 2 * 200
    # the current wait's expiry, plus "signal" timers left where a claim met the other's lock
    token = (await bot.session(cid))["wait"]["token"]
    timers = [t for t in await bot.timers() if "|signal|" not in t]
    assert timers == [f"{cid}|expire|{token}"]


async def test_two_workers_many_contacts(bot: Bot) -> None:
    bot.write("echo", ECHO)
    a, b = bot.new_worker(), bot.new_worker()
    cids = [await bot.contact(f"tel:+1555{i:04d}") for i in range(40)]
    for cid in cids:
        await bot.start(cid, "echo")
    for n in range(8):
        for cid in cids:
            await bot.reply(cid, f"{cid[:4]}-{n}")

    await asyncio.gather(bot.drain(a, "a", batch=13), bot.drain(b, "b", batch=7))

    for cid in cids:
        assert await bot.texts(cid) == [f"got {cid[:4]}-{n}" for n in range(8)]
        mine = [m["text"] for m in bot.channel.sent if m["contact"] == cid]
        assert mine == [f"got {cid[:4]}-{n}" for n in range(8)]
        assert await bot.queue_len(cid) == 0
    assert len(bot.channel.sent) == 40 * 8
    assert await _pending(bot) == (0, 0)


async def test_restart_in_the_middle_of_a_wait(redis: Redis, tmp_path: Path) -> None:
    folder = tmp_path / "flows"
    first = await Bot(redis, folder).setup()
    first.write(
        "ask",
        """
        nodes:
          - id: ask
            send_message: {text: "Your name?"}
            next: wait
          - id: wait
            wait_for_reply:
              result: name
              timeout: 1h
              on_timeout: {category: Silent, next: wait}
            next: greet
          - id: greet
            send_message: {text: "Hi @results.name.value"}
        """,
    )
    cid = await first.contact()
    await first.start(cid, "ask")
    await first.drain()
    assert first.channel.texts == ["Your name?"]
    await first.close()
    del first  # the process is gone: registry, engine, worker, channels

    second = await Bot(redis, folder).setup()
    try:
        assert second.registry.engine.flows == {}
        assert second.registry.reload().loaded == ["ask"]
        await second.reply(cid, "Bea")
        await second.drain()
        assert second.channel.texts == ["Hi Bea"]
        assert await second.texts(cid) == ["Your name?", "Hi Bea"]
        (run,) = await second.runs(cid)
        assert run["status"] == "completed"
        assert await second.timers() == []
    finally:
        await second.close()


async def test_lost_lock_commit_writes_nothing(bot: Bot) -> None:
    cid = await bot.contact()
    await bot.start(cid, "nothing")
    (claim,) = await bot.store.claim([cid], 60_000, 100)
    assert claim is not None and len(claim.events) == 1
    ready_before = await bot.redis.xlen(READY)
    run = {"uuid": "r1", "flow": "nothing", "status": "completed", "created_on": 1.0}
    message = {"uuid": "m1", "status": "queued", "text": "hi", "direction": "out"}

    def commit(token: str) -> Commit:
        return Commit(
            cid=cid,
            token=token,
            consumed=1,
            contact={"uuid": cid, "name": "Changed"},
            session='{"frames":[]}',
            new_runs=[{"uuid": "r1", "flow": "nothing", "created_on": 1.0}],
            ended_runs=[run],
            messages=[message],
            timers_add={f"{cid}|expire|t": 1.0},
        )

    assert await bot.store.commit([commit("not-the-token")]) == [-1]
    assert await bot.queue_len(cid) == 1
    assert (await bot.get_contact(cid))["name"] == "Ana Souza"
    assert await bot.store.session_raw(cid) is None
    assert await bot.redis.lrange(contact_key(cid, "runs"), 0, -1) == []
    assert await bot.redis.exists(contact_key(cid, "run:r1")) == 0
    assert await bot.store.messages(cid) == []
    assert await bot.redis.llen(contact_key(cid, "outbox")) == 0
    assert await bot.timers() == []
    # the event is still queued, and has a signal again (the caller acknowledges its own)
    assert await bot.redis.xlen(READY) == ready_before + 1
    assert await bot.redis.xlen(SENDQ) == 0
    assert await bot.redis.get(contact_key(cid, "lock")) == claim.token.encode()

    assert await bot.store.commit([commit(claim.token)]) == [0]  # the holder still can
    assert (await bot.get_contact(cid))["name"] == "Changed"
    assert await bot.queue_len(cid) == 0
    assert [m["uuid"] for m in await bot.store.messages(cid)] == ["m1"]
    assert await bot.redis.exists(contact_key(cid, "lock")) == 0


async def _wait_lock_expired(redis: Redis, cid: str) -> None:
    async def gone() -> bool:
        return not await redis.exists(contact_key(cid, "lock"))

    await wait_for(gone, "the lock to expire")


async def test_claim_never_committed_is_reclaimed_and_applied_once(
    redis: Redis, tmp_path: Path
) -> None:
    settings = WorkerSettings(lock_ttl_ms=30)
    bot = await Bot(redis, tmp_path / "flows", settings=settings).setup()
    try:
        bot.write(
            "hello",
            """
            nodes:
              - id: hi
                send_message: {text: "hi"}
                next: w
              - id: w
                wait_for_reply: {}
            """,
        )
        cid = await bot.contact()
        await bot.start(cid, "hello")
        # a worker reads the signal and claims the contact, then dies before committing
        entries = await bot.store.read_ready("dead", 100, None)
        assert [c for _, c in entries] == [cid]
        (dead,) = await bot.store.claim([cid], settings.lock_ttl_ms, settings.max_events)
        assert dead is not None
        await _wait_lock_expired(redis, cid)

        await bot.drain()  # the signal is pending with the dead consumer: nothing to read
        assert bot.channel.sent == [] and await bot.queue_len(cid) == 1

        reclaimed = await bot.store.reclaim_ready("alive", 0, 100)
        assert [c for _, c in reclaimed] == [cid]
        await bot.worker.process(reclaimed)
        await bot.drain()
        assert bot.channel.texts == ["hi"]
        assert await bot.queue_len(cid) == 0
        assert await _pending(bot) == (0, 0)
        assert len((await bot.session(cid))["frames"]) == 1

        # the dead worker wakes up and tries to commit: refused, nothing doubled
        late = Commit(cid=cid, token=dead.token, consumed=1, session='{"frames":[]}')
        assert await bot.store.commit([late]) == [-1]
        assert len((await bot.session(cid))["frames"]) == 1
        assert await bot.store.reclaim_ready("alive", 0, 100) == []
    finally:
        await bot.close()


async def test_worker_cancelled_mid_webhook_is_recovered(
    redis: Redis, tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    calls: list[str] = []
    first_call = asyncio.Event()
    release = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        calls.append(request.path)
        if len(calls) == 1:
            first_call.set()
            await release.wait()  # the first caller dies while waiting for this answer
        return web.json_response({"n": len(calls)})

    app = web.Application()
    app.router.add_get("/n", handler)
    server = await aiohttp_server(app)
    bot = await Bot(redis, tmp_path / "flows").setup()
    dying_hooks = WebhookCaller(allow_private=True)
    dying = bot.new_worker(dying_hooks, WorkerSettings(lock_ttl_ms=30))
    try:
        bot.write(
            "hook",
            f"""
            nodes:
              - id: call
                call_webhook: {{url: "http://127.0.0.1:{server.port}/n"}}
                next: say
              - id: say
                send_message: {{text: "call @webhook.n"}}
            """,
        )
        cid = await bot.contact()
        await bot.start(cid, "hook")
        task = asyncio.create_task(bot.drain(dying, "dying"))
        await asyncio.wait_for(first_call.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await dying_hooks.close()
        await _wait_lock_expired(redis, cid)
        assert await bot.queue_len(cid) == 1 and await bot.store.messages(cid) == []

        reclaimed = await bot.store.reclaim_ready("alive", 0, 100)
        await bot.worker.process(reclaimed)
        await bot.drain()
        assert calls == ["/n", "/n"]  # webhooks are at-least-once
        assert bot.channel.texts == ["call 2"]  # the flow's effects exactly once
        (run,) = await bot.runs(cid)
        assert (run["status"], [p[0] for p in run["path"]]) == ("completed", ["call", "say"])
        assert await _pending(bot) == (0, 0)
    finally:
        release.set()
        await dying_hooks.close()
        await bot.close()


async def test_events_for_a_locked_contact_wait_for_the_holder(bot: Bot) -> None:
    """A consumer that cannot claim acknowledges its signal; the holder's commit re-raises it."""
    bot.write("echo", ECHO)
    cid = await bot.contact()
    await bot.start(cid, "echo")
    await bot.drain()
    (held,) = await bot.store.claim([cid], 60_000, 100)
    assert held is not None and held.events == []
    await bot.reply(cid, "late")
    await bot.drain()  # claim fails: the signal is acknowledged, the event stays queued
    assert await bot.queue_len(cid) == 1 and await _pending(bot) == (0, 0)

    assert await bot.store.commit([Commit(cid=cid, token=held.token, consumed=0)]) == [1]
    await bot.drain()
    assert bot.channel.texts == ["got late"]
    assert json.loads(await bot.store.session_raw(cid) or b"{}")["wait"]["node"] == "ask"


async def test_a_contact_that_crashes_the_engine_does_not_hold_up_its_batch(bot: Bot) -> None:
    bot.write("echo", ECHO)
    good, bad = await bot.contact("tel:+15550101"), await bot.contact("tel:+15550102")
    await bot.start(good, "echo")
    await bot.start(bad, "echo")
    await bot.drain()
    # the bad contact's stored session is damaged (a frame without its run): applying fails
    await bot.redis.set(
        contact_key(bad, "session"), json.dumps({"frames": [{"flow": "echo", "node": "ask"}]})
    )
    await bot.reply(bad, "boom")
    await bot.reply(good, "hello")
    await bot.drain()
    assert await bot.texts(good) == ["got hello"]
    # the crashing events were consumed, the lock released, the broken state replaced
    assert await bot.queue_len(bad) == 0
    assert await bot.redis.exists(contact_key(bad, "lock")) == 0
    assert await bot.session(bad) == {"frames": []}
    assert await _pending(bot) == (0, 0)
    # and the contact works again afterwards
    await bot.start(bad, "echo")
    await bot.reply(bad, "again")
    await bot.drain()
    assert await bot.texts(bad) == ["got again"]


async def test_events_behind_a_dead_workers_lock_are_signalled_when_it_expires(bot: Bot) -> None:
    bot.write("echo", ECHO)
    cid = await bot.contact()
    await bot.start(cid, "echo")
    await bot.drain()
    # a worker takes the contact and dies (never commits): its lock lives 300 ms more
    await bot.reply(cid, "first")
    entries = await bot.store.read_ready("dead", 10, None)
    (dead,) = await bot.store.claim([cid], 300, 100)
    assert dead is not None and entries
    await bot.store.ack_ready([eid for eid, _ in entries])  # its signal is gone
    # a second reply arrives; the live worker finds the lock held and acknowledges its signal
    await bot.reply(cid, "second")
    await bot.drain()
    assert await bot.queue_len(cid) == 2 and await bot.texts(cid) == []
    (signal,) = [t for t in await bot.timers() if "|signal|" in t]
    assert signal == f"{cid}|signal|{dead.token}"
    # when the dead worker's lock has expired, the timer signals the contact again
    await _wait_lock_expired(bot.redis, cid)

    async def fired() -> int:
        return await bot.store.fire_timers(time.time())

    assert await wait_for(fired, "the signal timer to fire") >= 1
    await bot.drain()
    assert await bot.texts(cid) == ["got first", "got second"]
    assert await bot.queue_len(cid) == 0


async def test_a_contacts_history_is_bounded(bot: Bot, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bot.store.work.HISTORY_KEPT", 5)
    monkeypatch.setattr("bot.store.work.RUNS_KEPT", 2)
    bot.write("echo", ECHO)
    cid = await bot.contact()
    for _ in range(4):
        await bot.start(cid, "echo")  # each start interrupts the previous run
        await bot.drain()
    runs = [r.decode() for r in await bot.redis.lrange(contact_key(cid, "runs"), 0, -1)]
    assert len(runs) == 2
    assert await bot.redis.exists(*(contact_key(cid, f"run:{r}") for r in runs)) == 1  # 1 active
    for i in range(6):
        await bot.reply(cid, f"m{i}")
        await bot.drain()
    history = await bot.redis.lrange(contact_key(cid, "history"), 0, -1)
    assert len(history) == 5
    fields = set(await bot.redis.hkeys(contact_key(cid, "msgs")))
    kept = {h for h in history} | {h + b":s" for h in history}
    assert fields <= kept  # older messages and their states are gone
    assert [m["text"] for m in await bot.messages(cid, None)][-2:] == ["m5", "got m5"]


async def test_a_stopped_worker_leaves_the_consumer_groups(bot: Bot) -> None:
    bot.write("echo", ECHO)
    worker = bot.new_worker()
    await worker.start()
    cid = await bot.contact()
    await bot.start(cid, "echo")

    async def settled() -> bool:
        # the session is written before the event is acked, and the send follows: a worker
        # stopped in between keeps its consumer on purpose (it owns an entry, for the reclaimer)
        pending = [
            await bot.redis.xpending(s, g) for s, g in ((READY, "workers"), (SENDQ, "senders"))
        ]
        return bool(await bot.session(cid)) and all(p["pending"] == 0 for p in pending)

    await wait_for(settled, "the running worker to start the contact and ack its work")
    await worker.stop()
    for stream, group in ((READY, "workers"), (SENDQ, "senders")):
        names = [c["name"] for c in await bot.redis.xinfo_consumers(stream, group)]
        assert not [n for n in names if n.decode().startswith(worker.name)]


async def test_an_event_that_crashes_the_engine_is_dropped_alone(bot: Bot) -> None:
    bot.write("echo", ECHO)
    cid = await bot.contact()
    await bot.start(cid, "echo")
    await bot.drain()
    await bot.reply(cid, "a")
    await bot.store.enqueue(cid, {"type": "start", "flow": ["not", "a", "name"]})  # a bug's input
    await bot.reply(cid, "b")
    await bot.drain()
    assert await bot.texts(cid) == ["got a", "got b"]  # the others are applied, in order
    (frame,) = (await bot.session(cid))["frames"]
    assert frame["run"]["status"] == "waiting"
    (error,) = frame["run"]["errors"]
    assert error["code"] == "internal" and "event dropped: TypeError" in error["message"]
    assert await bot.queue_len(cid) == 0
