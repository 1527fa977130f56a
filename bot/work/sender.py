"""The send half of the work loops: a contact's outbox to its channel, in order, once.

Two ways in, one way out:

- inline: a commit that queued messages and found the contact's send line free took the send
  lock itself (commit.lua, with the claim's token and a "send" timer due at the lock's expiry);
  the worker hands the messages it already holds to :meth:`Sender.hand_over`, which sends them
  in a task of its own. At most ``inline_sends`` contacts are in hand at once per process
  (``offer``): past that, commits signal the send stream as before.
- the send stream: a signal names a contact; the sender takes its send lock and reads its
  outbox in one script (take_outbox) -- retries, held lines, busy processes, crash recovery.

Either way the messages go in order (a message to retry later stops the line until its timer
fires) and what became of them is recorded with one script per contact (record_sends.lua), many
contacts per pipeline. A message the channel accepted is recorded even if Redis went away
meanwhile (``_until_stored``). Which signal covers which crash: docs/performance.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Protocol, TypeVar, cast

from bot.core.clock import Clock
from bot.core.records import Message
from bot.store import Commit, SendOutcome, Store
from bot.store.redisconn import UNREACHABLE, once_reachable
from channels.protocol import Channel, SendResult

log = logging.getLogger("chasqui.queues")
T = TypeVar("T")

# Messages sent per contact per take: small enough that a batch (at a throttled 80/s) ends well
# inside the send lock's TTL; a contact with more is signalled again.
MESSAGES_PER_TAKE = 10
STORE_RETRY = 2.0  # seconds before a send that met an unreachable Redis is tried again


class SendSettings(Protocol):
    """What the sender reads of the worker's settings (``WorkerSettings``)."""

    @property
    def batch(self) -> int: ...
    @property
    def lock_ttl_ms(self) -> int: ...
    @property
    def max_send_attempts(self) -> int: ...
    @property
    def inline_sends(self) -> int: ...


class Sender:
    def __init__(
        self,
        store: Store,
        channels: dict[str, Channel],
        clock: Clock,
        settings: SendSettings,
    ) -> None:
        self.store = store
        self.channels = channels
        self.clock = clock
        self.settings = settings
        self._in_hand = 0  # contacts whose line we took inline and have not recorded yet
        self._tasks: set[asyncio.Task[None]] = set()  # inline sends and their records
        self._records: list[tuple[str, str, list[SendOutcome]]] = []  # to record next
        self._recording = False  # a record is in flight (or about to start)

    async def step(self, consumer: str, again: bool) -> None:
        """One turn of a send loop: read send signals (our own unacknowledged ones first after
        a failed step) and send what they name."""
        batch = self.settings.batch
        entries = await self.store.read_own_sendq(consumer, batch) if again else []
        entries = entries or await self.store.read_sendq(consumer, batch, 1000)
        if entries:
            await self.send(entries)

    async def _until_stored(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """As the worker's: record sends already made once Redis is back, within the lock."""
        return await once_reachable(what, call, self.settings.lock_ttl_ms / 2000)

    async def send(self, entries: list[tuple[bytes, str]]) -> None:
        cids = list(dict.fromkeys(cid for _, cid in entries))
        token = uuid.uuid4().hex
        outboxes = await self.store.take_outboxes(
            cids, token, self.settings.lock_ttl_ms, MESSAGES_PER_TAKE, self.clock.now()
        )
        todo = [(cid, msgs) for cid, msgs in zip(cids, outboxes, strict=True) if msgs]
        # Contacts are sent to concurrently; their outcomes are recorded in one pipeline (a
        # script call per contact would hold one pooled connection each: a batch of 100 would
        # exhaust redis-py's default pool of 100 connections).
        results = await asyncio.gather(*(self._send_contact(msgs) for _, msgs in todo))
        outcomes = [(cid, token, done) for (cid, _), done in zip(todo, results, strict=True)]
        # sent is sent: what the channel accepted must be recorded, or it would go out again
        await self._until_stored("record sends", lambda: self.store.record_sends(outcomes))
        eids = [eid for eid, _ in entries]
        await self._until_stored("ack sends", lambda: self.store.ack_sendq(eids))

    async def _send_contact(
        self, queued: list[tuple[dict[str, Any], dict[str, Any]]], index_last: bool = True
    ) -> list[SendOutcome]:
        """One contact's messages, in order: a contact never gets its second message first.
        A message to retry later stops the contact's line until its retry timer fires.

        A sent message's provider id is indexed at once (its statuses may come before the
        outcomes are recorded), but for the last one when ``index_last`` is false: its outcome
        is recorded right away, with its id (inline sends)."""
        outcomes: list[SendOutcome] = []
        for n, (message, state) in enumerate(queued, 1):
            if state.get("external_id") or state.get("status", "queued") != "queued":
                # sent by a sender whose lock expired before it could clear the outbox
                outcomes.append(SendOutcome(message, "skip", self.clock.now()))
                continue
            attempts = int(state.get("attempts", 0)) + 1
            # the channel grows its suggested retry delay with the attempt (4^n for 131056)
            result = await self._send_one(
                message if attempts == 1 else {**message, "attempt": attempts}
            )
            now = self.clock.now()
            if result.ok:
                if result.external_id and (index_last or n < len(queued)):
                    await self._index_early(message, result.external_id)
                outcomes.append(
                    SendOutcome(message, "sent", now, result.external_id, attempts=attempts)
                )
            elif result.retry_after is not None and attempts < self.settings.max_send_attempts:
                outcomes.append(
                    SendOutcome(
                        message,
                        "retry",
                        now,
                        error=result.error,
                        retry_at=now + result.retry_after,
                        attempts=attempts,
                    )
                )
                break
            else:
                outcomes.append(
                    SendOutcome(message, "failed", now, error=result.error, attempts=attempts)
                )
        return outcomes

    # -- inline sends ------------------------------------------------------------------------
    def offer(self, commits: list[Commit]) -> list[Commit]:
        """Ask the commits that queue messages to take their contact's send line inline, while
        this process has room (``inline_sends`` contacts in hand): the room bounds the locks we
        hold, so a start of thousands of contacts behind a rate limit goes through the stream.
        Every commit returned must be given to :meth:`hand_over` after the commit, done or not."""
        room = self.settings.inline_sends - self._in_hand
        offered: list[Commit] = []
        for c in commits:
            if len(offered) >= room:
                break
            if any(m.get("status") == "queued" for m in c.messages):  # commit.lua's outbox flag
                c.send_ttl_ms = self.settings.lock_ttl_ms
                offered.append(c)
        self._in_hand += len(offered)
        return offered

    def hand_over(self, offered: list[Commit]) -> None:
        """Send at once what the commits that took their line queued; free the others' room."""
        for c in offered:
            if not c.sending:
                self._in_hand -= 1
                continue
            queued = [m for m in c.messages if m.get("status") == "queued"]
            self._spawn(self._send_inline(c.cid, c.token, queued[:MESSAGES_PER_TAKE]))

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_inline(self, cid: str, token: str, messages: list[Message]) -> None:
        try:
            fresh: dict[str, Any] = {}  # no delivery state yet
            queued = [(cast(dict[str, Any], m), fresh) for m in messages]
            outcomes = await self._send_contact(queued, False)
        except Exception:
            # our line stays taken until its lock expires; then its timer signals it again
            log.exception("inline send to contact %s failed", cid)
            self._in_hand -= 1
            return
        self._records.append((cid, token, outcomes))
        if not self._recording:  # else the record in flight takes these next
            self._recording = True
            self._spawn(self._record())

    async def _record(self) -> None:
        """Record the outcomes of the inline sends done meanwhile, one pipeline at a time: the
        first on the next turn of the loop (with every send that ended in this one), then
        whatever ended while it was in flight. One connection, however many sends."""
        try:
            while self._records:
                batch, self._records = self._records, []
                try:
                    await self._until_stored(
                        "record sends", partial(self.store.record_sends, batch)
                    )
                except Exception:
                    # the lines' timers signal them again when the locks expire; a message sent
                    # and not recorded may then go again (as when a process dies between send
                    # and record)
                    log.exception("could not record the sends to %d contacts", len(batch))
                finally:
                    self._in_hand -= len(batch)
        finally:
            self._recording = False

    async def settle(self) -> bool:
        """Wait until no inline send is in hand; whether there was one (tests, shutdown)."""
        if not self._tasks:
            return False
        while self._tasks:
            await asyncio.wait(set(self._tasks))
        return True

    async def close(self, timeout: float = 5.0) -> None:
        """Let the inline sends in hand finish and be recorded (a send cut off before its record
        would go again once its lock expires); past ``timeout``, cancel them."""
        if self._tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.settle(), timeout)
        for task in list(self._tasks):
            task.cancel()

    async def _index_early(self, message: dict[str, Any], external_id: str) -> None:
        """Best effort: recording the send indexes the provider's id anyway. Debug only: in an
        outage every message in flight would say so, and the outage is logged once elsewhere."""
        try:
            await self.store.index_external(message, external_id)
        except UNREACHABLE as exc:
            log.debug("could not index %s early: Redis unreachable (%s)", external_id, exc)

    async def _send_one(self, message: dict[str, Any]) -> SendResult:
        channel = self.channels.get(message.get("channel") or "")
        if channel is None:
            return SendResult(False, error={"code": "channel_unavailable"})
        try:
            return await channel.send(message)
        except UNREACHABLE as exc:  # a channel that keeps state in Redis: not the message's fault
            error = {"code": "store_unavailable", "message": type(exc).__name__}
            return SendResult(False, error=error, retry_after=STORE_RETRY)
        except Exception as exc:  # a channel bug must not stop other contacts' sends
            log.exception("channel %s failed to send", channel.name)
            return SendResult(False, error={"code": "channel_error", "message": type(exc).__name__})
