"""The send half of the work loops: a contact's outbox to its channel, in order, once.

A send signal names a contact; the sender takes the contact's send lock and reads its outbox in
one script (take_outbox), sends the messages in order (a message to retry later stops the line
until its timer fires), and records what became of each in one pipeline (apply_status for the
monotonic status, finish_sends to drop what is done and release the lock). A message the
channel accepted is recorded even if Redis went away meanwhile (``until_stored``).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from bot.core.clock import Clock
from bot.store import SendOutcome, Store
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
        outcomes = [(cid, done) for (cid, _), done in zip(todo, results, strict=True)]
        # sent is sent: what the channel accepted must be recorded, or it would go out again
        await self._until_stored(
            "record sends", lambda: self.store.finish_sends_many(token, outcomes)
        )
        eids = [eid for eid, _ in entries]
        await self._until_stored("ack sends", lambda: self.store.ack_sendq(eids))

    async def _send_contact(
        self, queued: list[tuple[dict[str, Any], dict[str, Any]]]
    ) -> list[SendOutcome]:
        """One contact's messages, in order: a contact never gets its second message first.
        A message to retry later stops the contact's line until its retry timer fires."""
        outcomes: list[SendOutcome] = []
        for message, state in queued:
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
                if result.external_id:  # now: its statuses may come before finish_sends_many
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
