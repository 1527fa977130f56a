"""Starts: a start's hash, its targets and sources, the starts stream and its due set, the
per-start lock, deciding a contact once per start (``start_one.lua``), per-contact outcomes.

What a start *means* (which contact is started, chunk sizes, statuses) is bot/work/starts.py;
this module only keeps it. A start's ``sources`` are the sets its contacts are read from (its
named contacts, then each group's members), as key names kept on the start, so a chunk resumes
from the saved SSCAN cursor of the same set."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from typing import Any

from bot.store.base import StoreBase, dumps, text
from bot.store.keys import (
    READY,
    STARTERS,
    STARTQ,
    STARTS,
    STARTS_DUE,
    contact_key,
    idempotency_key,
    members_key,
    start_key,
)

log = logging.getLogger("chasqui.starts")

OUTCOMES = ("sent", "delivered", "read", "failed")  # a start's message outcomes, over time


class StartStore(StoreBase):
    # -- the record ------------------------------------------------------------------------------
    async def create_start(
        self, fields: dict[str, Any], targets: Sequence[str], group_ids: Sequence[str], now: float
    ) -> str:
        """Keep a new start (``fields``, its named contacts, its groups as sources) in the
        history; its uuid. It is not queued yet: see :meth:`queue_start`."""
        sid = str(uuid.uuid4())
        sources = [start_key(sid, "targets")] if targets else []
        sources += [members_key(gid) for gid in group_ids]
        for n in range(0, len(targets), 1000):
            await self._r.sadd(start_key(sid, "targets"), *targets[n : n + 1000])
        fields = {"uuid": sid, **fields, "sources": json.dumps(sources)}
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.hset(start_key(sid), mapping=fields)
            pipe.zadd(STARTS, {sid: now})
            await pipe.execute()
        return sid

    async def start_record(self, sid: str) -> dict[str, str] | None:
        raw = await self._r.hgetall(start_key(sid))
        return {text(k): text(v) for k, v in raw.items()} if raw else None

    async def start_records(self, sids: Sequence[str]) -> list[dict[str, str] | None]:
        """Several starts' records in one round trip (a page listing them)."""
        async with self._r.pipeline(transaction=False) as pipe:
            for sid in sids:
                pipe.hgetall(start_key(sid))
            raws = await pipe.execute()
        return [{text(k): text(v) for k, v in raw.items()} if raw else None for raw in raws]

    async def update_start(self, sid: str, fields: dict[str, Any]) -> None:
        await self._r.hset(start_key(sid), mapping=fields)

    async def end_start(self, sid: str, fields: dict[str, Any]) -> None:
        """Write the start's final fields (status, when, why) and forget its next chunk."""
        await self._r.hset(start_key(sid), mapping=fields)
        await self._r.zrem(STARTS_DUE, sid)

    async def start_progress(self, sid: str, phase: int, cursor: int, server: str) -> None:
        """Where the next chunk reads from (source, SSCAN cursor, and the run id of the Redis
        that gave the cursor: see :meth:`scan_source`); one more chunk done."""
        fields = {"phase": phase, "cursor": cursor, "scan_server": server}
        await self._r.hset(start_key(sid), mapping=fields)
        await self._r.hincrby(start_key(sid), "chunks", 1)

    async def start_page(
        self, before: float | None, count: int, *, inclusive: bool = False, offset: int = 0
    ) -> list[tuple[str, float]]:
        """(uuid, created_on) of up to ``count`` starts created before ``before`` (or at it,
        ``inclusive``), newest first (uuids descending within one instant), skipping
        ``offset``."""
        top: Any = "+inf" if before is None else before if inclusive else f"({before}"
        page = await self._r.zrevrangebyscore(
            STARTS, top, "-inf", start=offset, num=count, withscores=True
        )
        return [(text(raw), float(score)) for raw, score in page]

    async def start_outcomes(
        self, sid: str, status: str | None, cursor: int, count: int
    ) -> tuple[list[dict[str, str]], int]:
        """A page of the start's per-contact outcomes (HSCAN), and the next cursor (0: done)."""
        found: list[dict[str, str]] = []
        while True:
            cursor, page = await self._r.hscan(start_key(sid, "contacts"), cursor, count=count)
            for cid, value in page.items():
                outcome, _, reason = text(value).partition(":")
                reason, _, message = reason.partition(":")  # failed:<code>[:<message>]
                if status is None or outcome == status:
                    item = {"contact": text(cid), "status": outcome}
                    if reason:
                        item["reason"] = reason
                    if message:
                        item["message"] = message
                    found.append(item)
            if cursor == 0 or len(found) >= count:
                return found, int(cursor)

    async def start_timeline(self, sid: str) -> list[tuple[int, dict[str, int]]]:
        """The start's message outcomes over time, oldest first: (bucket start, counts of
        ``sent``, ``delivered``, ``read``, ``failed`` in it). A bucket is a minute in the
        start's first day, then an hour (``apply_status.lua``), so the hash stays small."""
        buckets: dict[int, dict[str, int]] = {}
        for key, value in (await self._r.hgetall(start_key(sid, "minutes"))).items():
            at, _, kind = text(key).partition(":")
            counts = buckets.setdefault(int(at), dict.fromkeys(OUTCOMES, 0))
            counts[kind] = int(value)
        return sorted(buckets.items())

    # -- idempotency -----------------------------------------------------------------------------
    async def idempotent_start(self, key: str) -> str | None:
        """The start an ``Idempotency-Key`` was given to, if any (and not expired)."""
        raw = await self._r.get(idempotency_key(key))
        return text(raw) if raw else None

    async def claim_idempotency(self, key: str, value: str, ttl: int) -> bool:
        """Take an ``Idempotency-Key`` for a start being made; False if it was taken first."""
        return bool(await self._r.set(idempotency_key(key), value, nx=True, ex=ttl))

    async def set_idempotency(self, key: str, sid: str, ttl: int) -> None:
        await self._r.set(idempotency_key(key), sid, ex=ttl)

    # -- the work stream -------------------------------------------------------------------------
    async def queue_start(self, sid: str) -> None:
        """Queue the start's next chunk now."""
        await self._r.xadd(STARTQ, {"s": sid})

    async def start_due(self, sid: str, due: float) -> None:
        """Queue the start's next chunk at ``due`` (see :meth:`move_due_starts`)."""
        await self._r.zadd(STARTS_DUE, {sid: due})

    async def move_due_starts(self, now: float, limit: int = 100) -> int:
        """Queue the chunks whose time has come; one process wins each, and moves it whole (Redis
        going away between a ZREM and an XADD would lose the start's chain for good)."""
        due = await self._r.zrangebyscore(STARTS_DUE, "-inf", now, start=0, num=limit)
        moved = 0
        for raw in due:
            moved += int(await self._script("move_due")(keys=[STARTS_DUE, STARTQ], args=[raw]))
        return moved

    async def read_startq(self, consumer: str, block_ms: int | None) -> list[tuple[bytes, str]]:
        reply = await self._r.xreadgroup(STARTERS, consumer, {STARTQ: ">"}, 1, block_ms)
        return [(eid, text(f[b"s"])) for _, entries in reply for eid, f in entries]

    async def read_own_startq(self, consumer: str) -> list[tuple[bytes, str]]:
        """Entries this consumer read and has not acknowledged (a step that failed midway)."""
        reply = await self._r.xreadgroup(STARTERS, consumer, {STARTQ: "0"}, 10)
        return [(eid, text(f[b"s"])) for _, entries in reply for eid, f in entries if f]

    async def reclaim_startq(self, consumer: str, min_idle_ms: int) -> list[tuple[bytes, str]]:
        reply = await self._r.xautoclaim(STARTQ, STARTERS, consumer, min_idle_ms, "0", 10)
        return [(eid, text(f[b"s"])) for eid, f in reply[1] if f]

    async def ack_start(self, eid: bytes) -> None:
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.xack(STARTQ, STARTERS, eid)
            pipe.xdel(STARTQ, eid)
            await pipe.execute()

    async def drop_starter(self, consumer: str) -> None:
        """Remove this consumer from the starters' group unless it owns a pending entry."""
        for info in await self._r.xinfo_consumers(STARTQ, STARTERS):
            name = text(info["name"])
            if name == consumer and int(info["pending"]) == 0:
                await self._r.xgroup_delconsumer(STARTQ, STARTERS, name)

    async def ready_backlog(self) -> int:
        """How many signals wait in the ready stream (big starts yield to the fast lane)."""
        return int(await self._r.xlen(READY))

    # -- expanding a chunk -----------------------------------------------------------------------
    async def lock_start(self, sid: str, token: bytes, ttl_ms: int) -> bool:
        """Hold the start for this process: True if taken now or already ours (left by a step
        that Redis cut short), False if another process holds it."""
        lock = start_key(sid, "lock")
        if not await self._r.set(lock, token, nx=True, px=ttl_ms):
            if await self._r.get(lock) != token:
                return False
            await self._r.pexpire(lock, ttl_ms)
        return True

    async def unlock_start(self, sid: str, token: bytes) -> None:
        await self._script("release_lock")(keys=[start_key(sid, "lock")], args=[token])

    async def source_sizes(self, sources: Sequence[str]) -> int:
        """How many contacts the start's sources hold (counting twice one in two groups)."""
        async with self._r.pipeline(transaction=False) as pipe:
            for key in sources:
                pipe.scard(key)
            return sum(await pipe.execute())

    async def scan_source(
        self, source: str, cursor: int, count: int, server: str
    ) -> tuple[str, int, list[str]]:
        """One SSCAN step over a source: (server run id, next cursor, contact uuids).

        A cursor means something only to the server process that gave it (``server``, its run
        id): a restarted (or failed-over) Redis lays its sets out anew, and an old cursor would
        skip members for good. So the run id is read with the scan, on the same connection, and
        a cursor from another run scans the source again from 0 (a contact already decided is
        decided once: see ``start_one.lua``)."""
        while True:
            async with self._r.pipeline(transaction=False) as pipe:
                pipe.info("server")
                pipe.sscan(source, cursor, count=count)
                info, (after, found) = await pipe.execute()
            now = str(info["run_id"])
            if cursor == 0 or now == server:
                return now, int(after), [text(c) for c in found]
            log.info("Redis restarted since the last chunk: scanning %s again from 0", source)
            cursor, server = 0, now

    async def undecided(self, sid: str, cids: Sequence[str]) -> list[str]:
        """Those of ``cids`` the start has not decided yet."""
        decided = await self._r.smismember(start_key(sid, "seen"), list(cids))
        return [c for c, d in zip(cids, decided, strict=True) if not d]

    async def decide_contacts(
        self, sid: str, decisions: Sequence[tuple[str, str, str, dict[str, Any]]]
    ) -> bool:
        """Record each (contact, outcome, reason, start event) once per start, queueing the
        event of those started. False if the start was cancelled meanwhile."""
        keys = [start_key(sid, "seen"), start_key(sid), start_key(sid, "contacts")]
        script = self._script("start_one")
        async with self._r.pipeline(transaction=False) as pipe:
            for cid, outcome, reason, event in decisions:
                await script(
                    keys=[*keys, contact_key(cid, "q"), READY],
                    args=[cid, outcome, reason, dumps(event)],
                    client=pipe,
                )
            results = await pipe.execute()
        return not any(int(x) < 0 for x in results)

    async def contact_facts(
        self, cids: Sequence[str], with_runs: bool
    ) -> list[tuple[dict[str, Any] | None, bytes | None, set[str]]]:
        """(contact, session, flows of its ended runs) of each contact, in two round trips."""
        async with self._r.pipeline(transaction=False) as pipe:
            for cid in cids:
                pipe.get(contact_key(cid, "contact"))
                pipe.get(contact_key(cid, "session"))
                if with_runs:
                    pipe.lrange(contact_key(cid, "runs"), 0, -1)
            replies = await pipe.execute()
        step = 3 if with_runs else 2
        flows: list[set[str]] = [set() for _ in cids]
        if with_runs:
            run_keys = [
                (n, contact_key(cid, f"run:{rid.decode()}"))
                for n, cid in enumerate(cids)
                for rid in replies[n * step + 2]
            ]
            if run_keys:
                raws = await self._r.mget([k for _, k in run_keys])
                for (n, _), raw in zip(run_keys, raws, strict=True):
                    if raw:
                        flows[n].add(str(json.loads(raw).get("flow")))
        return [
            (
                json.loads(replies[n * step]) if replies[n * step] else None,
                replies[n * step + 1],
                flows[n],
            )
            for n in range(len(cids))
        ]
