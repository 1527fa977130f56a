"""Sending: the send stream, taking a contact's outbox, recording what became of each send,
providers' statuses (monotonic), rate limits, webhook dedup; and what channels keep here: their
synced templates and the console channel's transcripts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.store.base import StoreBase, dumps
from bot.store.keys import (
    READY,
    SENDERS,
    SENDQ,
    START_PATTERNS,
    TIMERS,
    contact_key,
    ext_key,
    rate_key,
    templates_key,
)

EXTERNAL_ID_TTL = 30 * 86400  # statuses keep arriving for days; Meta retries for up to 7


@dataclass
class SendOutcome:
    """What the sender learnt of one message: ``sent``, ``failed`` (final), ``retry`` later, or
    ``skip`` (an earlier take already sent it: only drop it from the outbox)."""

    message: dict[str, Any]
    status: str
    at: float
    external_id: str | None = None
    error: dict[str, Any] | None = None
    retry_at: float | None = None
    attempts: int = 1


class OutboxStore(StoreBase):
    async def read_sendq(
        self, consumer: str, count: int, block_ms: int | None
    ) -> list[tuple[bytes, str]]:
        return await self._read(SENDQ, SENDERS, consumer, count, block_ms)

    async def read_own_sendq(self, consumer: str, count: int) -> list[tuple[bytes, str]]:
        """Send signals this consumer read and has not acknowledged (a step that failed midway)."""
        return await self._read_own(SENDQ, SENDERS, consumer, count)

    async def reclaim_sendq(
        self, consumer: str, min_idle_ms: int, count: int
    ) -> list[tuple[bytes, str]]:
        return await self._reclaim(SENDQ, SENDERS, consumer, min_idle_ms, count)

    async def ack_sendq(self, ids: Sequence[bytes]) -> None:
        """Done with these send signals: acknowledged and deleted."""
        await self._ack(SENDQ, SENDERS, ids)

    async def take_outboxes(
        self, cids: Sequence[str], token: str, ttl_ms: int, max_msgs: int, now: float
    ) -> list[list[tuple[dict[str, Any], dict[str, Any]]] | None]:
        """Per contact: None if another sender holds it, else its queued (message, state)."""
        script = self._script("take_outbox")
        async with self._r.pipeline(transaction=False) as pipe:
            for cid in cids:
                keys = [contact_key(cid, p) for p in ("sendlock", "outbox", "msgs")]
                await script(
                    keys=[*keys, TIMERS], args=[token, ttl_ms, max_msgs, now, cid], client=pipe
                )
            replies = await pipe.execute()
        taken: list[list[tuple[dict[str, Any], dict[str, Any]]] | None] = []
        for reply in replies:
            if reply is False or reply is None:
                taken.append(None)
            elif not reply:
                taken.append([])
            else:
                msgs, states = reply
                taken.append(
                    [
                        (json.loads(m), json.loads(st) if st else {})
                        for m, st in zip(msgs, states, strict=True)
                        if m
                    ]
                )
        return taken

    async def record_sends(
        self, contacts: Sequence[tuple[str, str, Sequence[SendOutcome]]]
    ) -> None:
        """Record what became of each contact's sends and release its line: one script per
        contact (record_sends.lua), all in one pipeline.

        A sent message's provider id is indexed in the same script as its outcome; statuses go
        through the same monotonic logic as webhooks (lua/status.lua)."""
        if not contacts:
            return
        script = self._script("record_sends")
        async with self._r.pipeline(transaction=False) as pipe:
            for cid, token, outcomes in contacts:
                keys = [contact_key(cid, p) for p in ("sendlock", "outbox", "msgs", "q")]
                args: list[Any] = [token, cid, EXTERNAL_ID_TTL, *START_PATTERNS, len(outcomes)]
                for o in outcomes:
                    extra: dict[str, Any] = {"attempts": o.attempts}
                    ext = ""
                    if o.external_id:
                        extra["external_id"] = o.external_id
                        ext = ext_key(o.message.get("channel") or "", o.external_id)
                    if o.status == "retry":
                        extra.update(retry_at=o.retry_at, last_error=o.error)
                    error = dumps(o.error) if o.error and o.status == "failed" else ""
                    retry_at = "" if o.retry_at is None else o.retry_at
                    args += [o.message["uuid"], o.status, o.at, error, dumps(extra), ext, retry_at]
                await script(keys=[*keys, READY, SENDQ, TIMERS], args=args, client=pipe)
            await pipe.execute()

    async def index_external(self, message: dict[str, Any], external_id: str) -> None:
        """Map a provider's id to the message as soon as the send is accepted."""
        key = ext_key(message.get("channel") or "", external_id)
        await self._r.set(key, f"{message['contact']} {message['uuid']}", ex=EXTERNAL_ID_TTL)

    async def apply_statuses(
        self, channel: str, statuses: Sequence[tuple[str, str, float, dict[str, Any] | None]]
    ) -> list[str]:
        """Many statuses (external id, status, at, error) in two round trips: a webhook POST
        carries up to a thousand of them."""
        if not statuses:
            return []
        refs = await self._r.mget([ext_key(channel, s[0]) for s in statuses])
        results = ["unknown"] * len(statuses)
        known = [(i, ref.decode().split(" ", 1)) for i, ref in enumerate(refs) if ref]
        if known:
            script = self._script("apply_status")
            async with self._r.pipeline(transaction=False) as pipe:
                for i, (cid, mid) in known:
                    _, status, at, error = statuses[i]
                    keys = [contact_key(cid, "msgs"), contact_key(cid, "q"), READY]
                    args = [
                        mid,
                        status,
                        at,
                        dumps(error) if error else "",
                        cid,
                        "",
                        *START_PATTERNS,
                    ]
                    await script(keys=keys, args=args, client=pipe)
                for (i, _), result in zip(known, await pipe.execute(), strict=True):
                    results[i] = result.decode() if isinstance(result, bytes) else str(result)
        return results

    async def rate_wait(self, bucket: str, per_second: float, burst: float = 1.0) -> float:
        """Seconds to wait before the next send on ``bucket`` (0: go now, and it is counted)."""
        wait = await self._script("rate_limit")(
            keys=[rate_key(bucket)], args=[1.0 / per_second, burst]
        )
        return float(wait)

    # -- templates ---------------------------------------------------------------------------
    async def save_templates(self, channel: str, templates: Sequence[dict[str, Any]]) -> None:
        """Replace a channel's synced templates (Meta's items, keyed ``name|language``)."""
        key = templates_key(channel)
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            if templates:
                pipe.hset(
                    key, mapping={f"{t['name']}|{t['language']}": dumps(t) for t in templates}
                )
            await pipe.execute()

    async def update_template(self, channel: str, template: dict[str, Any]) -> None:
        await self._r.hset(
            templates_key(channel), f"{template['name']}|{template['language']}", dumps(template)
        )

    async def has_templates(self, channel: str) -> bool:
        """Whether ``channel`` has any synced template (one HLEN: no template is read)."""
        return bool(await self._r.hlen(templates_key(channel)))

    async def template(self, channel: str, name: str, language: str) -> dict[str, Any] | None:
        """One synced template, by its exact name and language (one HGET)."""
        raw = await self._r.hget(templates_key(channel), f"{name}|{language}")
        return json.loads(raw) if raw else None

    async def templates(self, channel: str) -> list[dict[str, Any]]:
        raws = await self._r.hvals(templates_key(channel))
        return sorted((json.loads(r) for r in raws), key=lambda t: (t["name"], t["language"]))
