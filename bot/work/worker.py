"""The work loops of one ``chasqui serve`` process: events, timers and sends.

Any number of processes run these loops on one Redis. Per contact, events are applied in arrival
order and exactly once: the contact's lock is taken and its queue read in one script (claim), and
the sprint's effects are written and the consumed events removed in another (commit) that does
nothing if the lock was lost meanwhile. Stream entries are only signals ("this contact has work");
a signal acknowledged before its work was committed is re-raised by the commit script itself.
A contact may also be claimed by the webhook that queued its event (the fast lane,
bot/work/lane.py): the claim comes to this worker with no signal, a timer standing in for one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from bot.core.clock import Clock
from bot.core.runstatus import RunStatus
from bot.engine.apply import Engine
from bot.engine.events import WebhookAnswered, decode
from bot.engine.sprint import Session, Sprint
from bot.store import Claim, Commit, Store
from bot.store.redisconn import UNREACHABLE, once_reachable
from bot.work.lane import Lane
from bot.work.sender import Sender
from bot.work.starts import Starter
from bot.work.webhook_calls import WebhookCaller
from channels.protocol import Channel

log = logging.getLogger("chasqui.queues")
T = TypeVar("T")

# Deciding for a batch is pure CPU (~0.3 ms a contact); handing the loop back every few contacts
# keeps webhook acknowledgements from waiting behind a whole batch (ack p99 at 500/s, bench/).
YIELD_EVERY = 10


@dataclass(frozen=True)
class WorkerSettings:
    consumers: int = 2  # concurrent batch loops per process
    batch: int = 100
    lock_ttl_ms: int = 60_000
    max_events: int = 100
    reclaim_idle_ms: int = 65_000  # longer than the lock's TTL: a dead holder's lock is gone
    timer_interval: float = 0.2
    max_send_attempts: int = 8  # retries (throttling, pair rate, 5xx) before a send fails
    inline_sends: int = 64  # contacts sent to at once straight from their commit (sender.py)


class LockLost(Exception):
    """The contact's lock expired under us: nothing of this sprint may be written."""


class Worker:
    def __init__(
        self,
        store: Store,
        engine: Callable[[], Engine],
        channels: dict[str, Channel],
        clock: Clock,
        settings: WorkerSettings | None = None,
        webhooks: WebhookCaller | None = None,
    ) -> None:
        self.store = store
        self.engine = engine  # a callable: flows may be reloaded while we run
        self.channels = channels
        self.clock = clock
        self.settings = settings or WorkerSettings()
        self.webhooks = webhooks or WebhookCaller()
        self.name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._tasks: list[asyncio.Task[None]] = []
        self.starter = Starter(store, engine, clock)  # group starts, a chunk at a time
        self.sender = Sender(store, channels, clock, self.settings)  # outboxes to channels
        # contacts the webhooks claim for this process (bot/work/lane.py): a few batches' worth
        self.lane = Lane(2 * self.settings.batch)
        self._lane_task: asyncio.Task[None] | None = None
        self._lane_slow_tasks: set[asyncio.Task[None]] = set()  # lane contacts in a webhook call

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        await self.store.setup()
        loops = [self._event_loop(i) for i in range(self.settings.consumers)]
        loops += [self._send_loop(i) for i in range(self.settings.consumers)]
        loops += [self._timer_loop(), self._reclaim_loop()]
        loops.append(self._start_loop())
        self._tasks = [asyncio.create_task(loop) for loop in loops]
        self.lane.open = True
        self._lane_task = asyncio.create_task(self._lane_loop())

    async def stop(self) -> None:
        await self._stop_lane()
        pending = set(self._tasks)
        while pending:  # cancel again if a cancel was lost (see _forever)
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=0.1)
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.sender.close()
        await self.webhooks.close()
        # our consumers leave the groups (those still owning entries stay, for the reclaimer)
        with contextlib.suppress(Exception):
            await self.store.drop_idle_consumers(self.name)
        with contextlib.suppress(Exception):
            await self.starter.drop_consumer(f"{self.name}:st")

    async def _forever(self, what: str, step: Callable[[bool], Awaitable[None]]) -> None:
        """Run ``step`` again and again; a failing step is logged and retried, never fatal.

        ``step(again)``: ``again`` is True after a failed step, which may have left entries read
        and not acknowledged; the step does those first (``Store.read_own``), so that recovering
        from an outage never waits for the reclaim. While Redis cannot be reached the loop says
        so once, and once more when it is back -- not a traceback every second."""
        task = asyncio.current_task()
        again = down = False
        while True:
            # On Python 3.11 a cancel can be lost inside a library (asyncio.wait_for drops it
            # when the awaited call finishes at the same moment; redis-py uses wait_for), and
            # the loop would then run forever and hang shutdown: honour it here as well.
            if task is not None and task.cancelling():
                raise asyncio.CancelledError
            try:
                await step(again)
            except asyncio.CancelledError:
                raise
            except UNREACHABLE as exc:
                if not down:
                    log.warning("%s: Redis unreachable (%s); trying again every second", what, exc)
                down = again = True
                await asyncio.sleep(1)
            except Exception:
                log.exception("%s failed; retrying in 1s", what)
                again = True
                await asyncio.sleep(1)
            else:
                if down:
                    log.warning("%s: Redis is back", what)
                again = down = False

    async def _stop_lane(self) -> None:
        """Take no more claims from webhooks; commit those in hand (for a while), release what
        is left (their timers signal them again if even that fails)."""
        self.lane.close()
        task, self._lane_task = self._lane_task, None
        if task is None:
            return
        _, pending = await asyncio.wait({task}, timeout=min(self.settings.lock_ttl_ms / 2000, 10))
        for unfinished in (*pending, *self._lane_slow_tasks):
            unfinished.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await unfinished
        await self._release(self.lane.leftover())

    async def _lane_loop(self) -> None:
        while await self.lane_step():
            pass

    async def lane_step(self) -> bool:
        """Decide and commit a batch of the contacts webhooks claimed for this process (the fast
        lane), one commit pipeline for all; False once the lane is closed and nothing is left.
        Contacts waiting on a webhook call finish in a task of their own, so that one slow call
        does not hold up the lane. Claims that cannot be committed are released: their events
        are signalled again."""
        claims = await self.lane.take(self.settings.batch)
        if claims is None:
            return False
        quick = claims
        try:
            commits, slow = await self._decide_all(claims)
            if slow:
                waiting = {id(claim) for claim, _ in slow}
                quick = [claim for claim in claims if id(claim) not in waiting]
                task = asyncio.create_task(self._lane_slow(slow))
                self._lane_slow_tasks.add(task)
                task.add_done_callback(self._lane_slow_tasks.discard)
            if commits:
                await self._commit(commits)
        except Exception:
            log.exception("fast lane: could not commit %d contact(s)", len(quick))
            await self._release(quick)
        finally:
            self.lane.done(len(quick))
        return True

    async def _lane_slow(self, slow: list[tuple[Claim, asyncio.Task[Commit]]]) -> None:
        claims = [claim for claim, _ in slow]
        try:
            done = await asyncio.gather(*(task for _, task in slow))
            await self._commit(list(done))
        except Exception:
            log.exception("fast lane: could not commit %d contact(s)", len(claims))
            await self._release(claims)
        finally:
            self.lane.done(len(claims))

    async def _release(self, claims: list[Claim]) -> None:
        """Give claims back undone: a commit that consumes nothing unlocks the contact and
        signals its events (if the lock is still ours; else it writes nothing). Best effort:
        when Redis is unreachable, each claim's timer signals its contact once its lock expires."""
        if not claims:
            return
        release = [
            Commit(c.cid, c.token, 0, timers_remove=[c.timer] if c.timer else []) for c in claims
        ]
        try:
            await self.store.commit(release)
        except Exception as exc:
            log.warning("could not release %d contact(s) (%s); their timers will", len(claims), exc)

    async def _event_loop(self, n: int) -> None:
        consumer = f"{self.name}:{n}"

        async def step(again: bool) -> None:
            batch = self.settings.batch
            entries = await self.store.read_own_ready(consumer, batch) if again else []
            entries = entries or await self.store.read_ready(consumer, batch, 1000)
            if entries:
                await self.process(entries)

        await self._forever("event loop", step)

    async def _send_loop(self, n: int) -> None:
        consumer = f"{self.name}:s{n}"

        async def step(again: bool) -> None:
            await self.sender.step(consumer, again)

        await self._forever("send loop", step)

    async def _timer_loop(self) -> None:
        async def step(again: bool) -> None:
            while await self.store.fire_timers(self.clock.now()) > 0:
                pass
            await asyncio.sleep(self.settings.timer_interval)

        await self._forever("timer loop", step)

    async def _start_loop(self) -> None:
        """Expand group starts (bot/work/starts.py): one chunk per stream entry, fast lane first."""
        consumer = f"{self.name}:st"

        async def step(again: bool) -> None:
            await self.starter.loop(consumer, again)

        await self._forever("start loop", step)

    async def _reclaim_loop(self) -> None:
        """Take over signals that a crashed process read and never acknowledged."""
        idle = self.settings.reclaim_idle_ms

        consumer, batch = f"{self.name}:r", self.settings.batch

        async def step(again: bool) -> None:
            entries = await self.store.read_own_ready(consumer, batch) if again else []
            entries = entries or await self.store.reclaim_ready(consumer, idle, batch)
            if entries:
                await self.process(entries)
            sends = await self.store.read_own_sendq(consumer, batch) if again else []
            sends = sends or await self.store.reclaim_sendq(consumer, idle, batch)
            if sends:
                await self.send(sends)
            await asyncio.sleep(max(idle / 4000, 0.05))

        await self._forever("reclaim loop", step)

    async def send(self, entries: list[tuple[bytes, str]]) -> None:
        """Send the outboxes of the contacts these send signals name (bot/work/sender.py)."""
        await self.sender.send(entries)

    # -- events ------------------------------------------------------------------------------
    async def process(self, entries: list[tuple[bytes, str]]) -> None:
        """Apply the queued events of the contacts these entries name; then acknowledge them."""
        by_contact: dict[str, list[bytes]] = {}
        for eid, cid in entries:
            by_contact.setdefault(cid, []).append(eid)
        cids = list(by_contact)
        s = self.settings
        claims = await self.store.claim(cids, s.lock_ttl_ms, s.max_events)
        # a contact another worker holds is None: its commit re-signals what is left, and if
        # it died, claim.lua left a timer that signals again when its lock expires
        await self.apply([claim for claim in claims if claim is not None])
        acked = [e for eid in by_contact.values() for e in eid]
        await self._until_stored("ack events", lambda: self.store.ack_ready(acked))

    async def apply(self, claims: list[Claim]) -> None:
        """Decide each claimed contact's sprint and commit them (the fast ones in one pipeline,
        those that wait on a webhook call in another)."""
        commits, slow = await self._decide_all(claims)
        if commits:
            await self._commit(commits)
        if slow:
            done = await asyncio.gather(*(task for _, task in slow))
            await self._commit(list(done))

    async def _decide_all(
        self, claims: list[Claim]
    ) -> tuple[list[Commit], list[tuple[Claim, asyncio.Task[Commit]]]]:
        """The commits of the contacts decided without I/O, and a task for each one whose
        sprint waits on a webhook call (it gives that contact's commit)."""
        commits: list[Commit] = []
        slow: list[tuple[Claim, asyncio.Task[Commit]]] = []
        engine = self.engine()
        for n, claim in enumerate(claims):
            if n and n % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # let webhooks be acknowledged between contacts
            sprint, pending = self._decide(engine, claim)
            if pending is None:
                commits.append(self._commit_of(claim, len(claim.events), sprint))
            else:
                task = asyncio.create_task(self._finish_with_io(engine, sprint, claim, pending))
                slow.append((claim, task))
        return commits, slow

    async def _until_stored(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """Record work already done once Redis is back, instead of dropping it.

        Redis went away between deciding (or sending) and recording it: the result is kept in
        memory and the write tried again while the contacts' locks (held for ``lock_ttl_ms``)
        still cover it -- the writes are safe to repeat (a commit whose lock is gone writes
        nothing; statuses are monotonic; acks are idempotent). A longer outage gives up and
        leaves the work to the reclaim loop, as for a crash.
        """
        return await once_reachable(what, call, self.settings.lock_ttl_ms / 2000)

    def _decide(self, engine: Engine, claim: Claim) -> tuple[Sprint, int | None]:
        contact = claim.contact or {"uuid": claim.cid, "urns": [], "deleted": True}
        try:
            sprint = engine.sprint(contact, Session.from_json(claim.session_raw), self.clock.now())
            return sprint, self._apply_until_io(engine, sprint, claim.events)
        except Exception as exc:
            return self._poisoned(engine, claim, exc), None

    def _poisoned(self, engine: Engine, claim: Claim, exc: Exception) -> Sprint:
        """An event that crashes the engine is a bug of ours: it is dropped (and noted on the
        contact's run) and the contact's other events are applied without it, rather than
        retrying it forever and holding up the whole batch. If that cannot be done either,
        the contact's runs end as failed."""
        log.error("engine error on contact %s: dropping the event", claim.cid, exc_info=exc)
        dropped: dict[int, str] = {}
        for _ in range(len(claim.events)):
            index = -1
            try:
                sprint = self._pristine(engine, claim)
                for index, event in enumerate(claim.events):
                    if index in dropped:
                        continue
                    engine.apply(sprint, decode(event))
                    if sprint.webhook_request is not None:
                        raise RuntimeError("a webhook call while replaying")  # no I/O here
            except Exception as again:
                if index < 0 or index in dropped or "while replaying" in str(again):
                    break
                dropped[index] = f"{type(again).__name__}: {again}"
                continue
            for reason in dropped.values():
                if sprint.session.frames:
                    sprint.run["errors"].append(
                        {
                            "code": "internal",
                            "message": f"event dropped: {reason}",
                            "at": sprint.now,
                        }
                    )
            return sprint
        sprint = Sprint(engine, self._contact_of(claim), Session(), self.clock.now())
        try:
            sprint.session = Session.from_json(claim.session_raw)
            sprint.end_all(RunStatus.FAILED, f"internal error: {type(exc).__name__}: {exc}")
        except Exception:  # the stored session itself is unreadable: start the contact afresh
            sprint.session = Session()
            sprint.ended_runs.clear()
            sprint.counts.clear()
            sprint.session_dirty = True
        return sprint

    def _contact_of(self, claim: Claim) -> dict[str, Any]:
        """The contact as it was read (a failed attempt may have changed ``claim.contact``)."""
        if claim.contact_raw:
            contact: dict[str, Any] = json.loads(claim.contact_raw)
            return contact
        return {"uuid": claim.cid, "urns": [], "deleted": True}

    def _pristine(self, engine: Engine, claim: Claim) -> Sprint:
        return engine.sprint(
            self._contact_of(claim), Session.from_json(claim.session_raw), self.clock.now()
        )

    def _apply_until_io(
        self, engine: Engine, sprint: Sprint, events: list[dict[str, Any]]
    ) -> int | None:
        """Apply events (as queued: decoded here) in order; the index of the event left waiting
        on a webhook, if any. One that cannot be decoded raises, like one that cannot be applied."""
        for i, event in enumerate(events):
            engine.apply(sprint, decode(event))
            if sprint.webhook_request is not None:
                return i
        return None

    async def _finish_with_io(
        self, engine: Engine, sprint: Sprint, claim: Claim, index: int
    ) -> Commit:
        """Make the webhook calls a sprint asked for, feed the answers back, apply the rest."""
        try:
            return await self._webhooks_then_rest(engine, sprint, claim, index)
        except LockLost:
            # another worker may have the contact now: a commit that changes nothing (its
            # token no longer matches, so it only makes sure the events keep a signal)
            return Commit(cid=claim.cid, token=claim.token, consumed=0)
        except Exception as exc:
            poisoned = self._poisoned(engine, claim, exc)
            return self._commit_of(claim, len(claim.events), poisoned)

    async def _webhooks_then_rest(
        self, engine: Engine, sprint: Sprint, claim: Claim, index: int
    ) -> Commit:
        events = claim.events
        while True:
            request, sprint.webhook_request = sprint.webhook_request, None
            assert request is not None
            # the call may take its whole timeout: keep the contact ours meanwhile
            if not await self.store.extend_lock(claim.cid, claim.token, self.settings.lock_ttl_ms):
                raise LockLost(claim.cid)
            response = await self.webhooks.call(request)
            engine.apply(sprint, WebhookAnswered(response=response, at=self.clock.now()))
            if sprint.webhook_request is not None:
                continue
            rest = self._apply_until_io(engine, sprint, events[index + 1 :])
            if rest is None:
                return self._commit_of(claim, len(events), sprint)
            index += 1 + rest

    def _commit_of(self, claim: Claim, consumed: int, sprint: Sprint) -> Commit:
        return Commit(
            cid=claim.cid,
            token=claim.token,
            consumed=consumed,
            contact=sprint.contact
            if sprint.contact_dirty and not sprint.contact.get("deleted")
            else None,
            session=sprint.session.to_json() if sprint.session_dirty else None,
            new_runs=sprint.new_runs,
            ended_runs=sprint.ended_runs,
            messages=sprint.messages,
            timers_remove=[*sprint.timers_remove, claim.timer]
            if claim.timer
            else sprint.timers_remove,
            timers_add=sprint.timers_add,
            groups=sprint.group_changes,
            counts=sprint.counts,
            now=sprint.now,
            contact_before=claim.contact_raw,
        )

    async def _commit(self, commits: list[Commit]) -> None:
        offered = self.sender.offer(commits)  # a free send line is taken by the commit itself
        try:
            results = await self._until_stored("commit", lambda: self.store.commit(commits))
        finally:
            self.sender.hand_over(offered)
        for commit, result in zip(commits, results, strict=True):
            if result < 0:
                log.warning(
                    "lost the lock of contact %s; its events will be applied again", commit.cid
                )
