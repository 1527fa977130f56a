"""Work: each contact's event queue, the ready stream its signals go through, claiming a
contact (lock, then read), committing a sprint's effects in one script, and the timers."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from redis.exceptions import ResponseError

from bot.core.records import Message, Run
from bot.store.base import StoreBase, dumps
from bot.store.contacts import new_contact
from bot.store.keys import (
    CONTACTS,
    GROUP_SEQ,
    GROUPS,
    QUEUE_PATTERN,
    READY,
    RUN_FLOWS,
    SEARCH,
    SENDERS,
    SENDQ,
    START_PATTERNS,
    STARTERS,
    STARTQ,
    STARTS,
    TIMERS,
    WORKERS,
    contact_key,
    created_prefix,
    flow_runs_key,
    flow_stats_key,
    group_key,
    members_key,
    run_member,
    seen_key,
    signal_timer,
    start_key,
    urn_key,
)
from bot.store.search import contact_words, member_diff

# A contact's history is bounded: its last messages and runs are kept (the API shows fewer),
# older ones are dropped at the next commit, so Redis does not grow with all traffic ever.
HISTORY_KEPT = 1000
RUNS_KEPT = 200


@dataclass
class Claim:
    """A contact whose lock we hold, with its queued events and state as read."""

    cid: str
    token: str
    events: list[dict[str, Any]]
    contact: dict[str, Any] | None
    session_raw: bytes
    contact_raw: bytes = b""  # as read: a sprint changes ``contact`` in place
    # taken by the webhook (the fast lane): the timer that re-signals the contact when the lock
    # expires, should this process die holding it; the commit removes it
    timer: str = ""

    @classmethod
    def of(cls, cid: str, token: str, read: Sequence[Any], timer: str = "") -> Claim:
        """The claim of a script's reply (events, contact, session as stored)."""
        events, contact, session = read
        return cls(
            cid,
            token,
            [json.loads(e) for e in events],
            json.loads(contact) if contact else None,
            session,
            contact or b"",
            timer,
        )


@dataclass(slots=True)
class Inbound:
    """One inbound message for :meth:`WorkStore.inbound`."""

    dedup: str  # "<channel>:<external id>": a redelivery of it is dropped
    redelivery: int  # for this many seconds
    urn: str
    name: str  # of a contact made for it
    at: float  # its time: a contact made for it was created then
    event: dict[str, Any]  # its reply event; ``new_contact`` is set by the script


@dataclass
class Commit:
    cid: str
    token: str
    consumed: int
    contact: dict[str, Any] | None = None  # None: unchanged
    session: str | None = None  # None: unchanged
    new_runs: list[Run] = field(default_factory=list)
    ended_runs: list[Run] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    timers_remove: list[str] = field(default_factory=list)
    timers_add: dict[str, float] = field(default_factory=dict)
    # group name -> True (add) / False (remove): the group sets follow the contact's groups
    groups: dict[str, bool] = field(default_factory=dict)
    counts: dict[tuple[str, str], int] = field(default_factory=dict)  # (flow, field) -> change
    now: float = 0.0
    contact_before: bytes = b""  # the contact as claimed: its search words change with it
    # inline sends (bot/work/sender.py): > 0 asks the commit to take the contact's send line for
    # this long (with ``token``) when it is free; ``sending`` says it did: send these now
    send_ttl_ms: int = 0
    sending: bool = False


class WorkStore(StoreBase):
    async def setup(self) -> None:
        """Create the consumer groups (once; a second process finds them)."""
        for stream, group in ((READY, WORKERS), (SENDQ, SENDERS), (STARTQ, STARTERS)):
            try:
                await self._r.xgroup_create(stream, group, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def enqueue(self, cid: str, event: dict[str, Any]) -> None:
        await self._script("enqueue")(keys=[contact_key(cid, "q"), READY], args=[dumps(event), cid])

    async def inbound(
        self, messages: Sequence[Inbound], claims: int, ttl_ms: int, max_events: int
    ) -> tuple[list[tuple[str, bool] | None], list[Claim]]:
        """One webhook's messages in one call (inbound.lua): each dropped if a redelivery, else
        queued for the contact of its URN (created if new). Per message: None for a
        redelivery, else (contact uuid, True when the contact was made for it). Up to
        ``claims`` of the contacts that got events are claimed at once when their lock is free
        (lock held for ``ttl_ms``, up to ``max_events`` events read); the others are signalled
        on the ready stream."""
        keys = [CONTACTS, SEARCH, READY, TIMERS]
        prefix = uuid.uuid4().hex
        args: list[Any] = [contact_key("%s", "%s"), claims, prefix, ttl_ms, max_events]
        for m in messages:
            keys += [seen_key(m.dedup), urn_key(m.urn)]
            record = new_contact(m.urn, m.name, m.at)
            found = contact_words(record)
            args += [m.redelivery, str(uuid.uuid4()), dumps(record), created_prefix(m.at)]
            args += [dumps(m.event), len(found), *found]
        outcomes, taken = await self._script("inbound")(keys=keys, args=args)
        queued: list[tuple[str, bool] | None] = [
            (cid.decode(), int(outcome) == 2) if int(outcome) else None
            for cid, outcome in zip(outcomes[::2], outcomes[1::2], strict=True)
        ]
        fast: list[Claim] = []
        for raw_cid, raw_token, *read in taken:
            cid, token = raw_cid.decode(), raw_token.decode()
            fast.append(Claim.of(cid, token, read, signal_timer(cid, token)))
        return queued, fast

    async def read_ready(
        self, consumer: str, count: int, block_ms: int | None
    ) -> list[tuple[bytes, str]]:
        """Signals for this consumer; ``block_ms=None`` returns at once (0 would block forever)."""
        return await self._read(READY, WORKERS, consumer, count, block_ms)

    async def read_own_ready(self, consumer: str, count: int) -> list[tuple[bytes, str]]:
        """Signals this consumer read and has not acknowledged (a step that failed midway)."""
        return await self._read_own(READY, WORKERS, consumer, count)

    async def reclaim_ready(
        self, consumer: str, min_idle_ms: int, count: int
    ) -> list[tuple[bytes, str]]:
        """Entries a dead worker took and never acknowledged."""
        return await self._reclaim(READY, WORKERS, consumer, min_idle_ms, count)

    async def drop_idle_consumers(self, prefix: str) -> int:
        """Remove this process's consumers that own no pending entry from both groups, so the
        groups don't collect a consumer per restart."""
        dropped = 0
        for stream, group in ((READY, WORKERS), (SENDQ, SENDERS)):
            for info in await self._r.xinfo_consumers(stream, group):
                name = info["name"]
                name = name.decode() if isinstance(name, bytes) else str(name)
                if name.startswith(prefix) and int(info["pending"]) == 0:
                    dropped += int(await self._r.xgroup_delconsumer(stream, group, name) == 0)
        return dropped

    async def ack_ready(self, ids: Sequence[bytes]) -> None:
        """Done with these ready signals: acknowledged and deleted."""
        await self._ack(READY, WORKERS, ids)

    async def claim(self, cids: Sequence[str], ttl_ms: int, max_events: int) -> list[Claim | None]:
        script = self._script("claim")
        tokens = [uuid.uuid4().hex for _ in cids]
        async with self._r.pipeline(transaction=False) as pipe:
            for cid, token in zip(cids, tokens, strict=True):
                keys = [contact_key(cid, p) for p in ("lock", "q", "contact", "session")]
                await script(
                    keys=[*keys, TIMERS], args=[token, ttl_ms, max_events, cid], client=pipe
                )
            replies = await pipe.execute()
        return [
            Claim.of(cid, token, reply) if reply else None
            for cid, token, reply in zip(cids, tokens, replies, strict=True)
        ]

    async def extend_lock(self, cid: str, token: str, ttl_ms: int) -> bool:
        """Renew a contact's lock we still hold (before a long webhook call)."""
        return bool(
            await self._script("extend_lock")(keys=[contact_key(cid, "lock")], args=[token, ttl_ms])
        )

    async def commit(self, commits: Sequence[Commit]) -> list[int]:
        """Write each sprint's effects; -1 for one whose lock was lost (nothing written).
        A commit given ``send_ttl_ms`` says in ``sending`` whether it took the send line."""
        script = self._script("commit")
        async with self._r.pipeline(transaction=False) as pipe:
            for c in commits:
                keys = [
                    contact_key(c.cid, p)
                    for p in (
                        "lock",
                        "q",
                        "contact",
                        "session",
                        "runs",
                        "msgs",
                        "history",
                        "outbox",
                    )
                ]
                keys += [TIMERS, READY, SENDQ]
                keys += [contact_key(c.cid, f"run:{r['uuid']}") for r in c.ended_runs]
                args: list[Any] = [
                    c.token,
                    c.consumed,
                    dumps(c.contact) if c.contact else "",
                    c.session or "",
                    c.cid,
                    flow_runs_key("%s", "%s"),
                    flow_stats_key("%s"),
                    RUN_FLOWS,
                    len(c.new_runs),
                ]
                for r in c.new_runs:
                    args += [r["uuid"], r["flow"], run_member(c.cid, r)]
                args.append(len(c.ended_runs))
                for r in c.ended_runs:
                    args += [dumps(r), r["flow"], r["status"], run_member(c.cid, r)]
                args.append(len(c.messages))
                for m in c.messages:
                    args += [m["uuid"], dumps(m), _outbox_flag(m)]
                args += [len(c.timers_remove), *c.timers_remove, len(c.timers_add)]
                for member, due in c.timers_add.items():
                    args += [member, due]
                groups = c.groups if c.contact else {}
                args.append(len(groups))
                if groups:
                    args += [GROUPS, GROUP_SEQ, group_key("%s"), members_key("%s"), c.now]
                    for name, add in groups.items():
                        args += [name, "1" if add else "0"]
                counts = [(k, d) for k, d in c.counts.items() if d]
                args.append(len(counts))
                for (flow, name), delta in counts:
                    args += [flow, name, delta]
                args += [HISTORY_KEPT, RUNS_KEPT, contact_key(c.cid, "run:%s"), *START_PATTERNS]
                unindex, index = _search_changes(c)
                args += [SEARCH, len(unindex), *unindex, len(index), *index]
                args += [STARTS, start_key("%s", "seen"), *_triggered(c.new_runs)]
                args += [contact_key(c.cid, "sendlock"), c.send_ttl_ms]
                await script(keys=keys, args=args, client=pipe)
            replies = await pipe.execute()
        results: list[int] = []
        for c, reply in zip(commits, replies, strict=True):
            if isinstance(reply, list):  # it took the send line: the caller sends at once
                c.sending, reply = True, reply[0]
            results.append(int(reply))
        return results

    async def next_timer(self, until: float) -> float | None:
        """When the first timer due by ``until`` is due, if any."""
        due = await self._r.zrangebyscore(TIMERS, "-inf", until, start=0, num=1, withscores=True)
        return float(due[0][1]) if due else None

    async def fire_timers(self, now: float, limit: int = 1000) -> int:
        fired = await self._script("fire_timers")(
            keys=[TIMERS, READY, SENDQ], args=[now, limit, QUEUE_PATTERN]
        )
        return int(fired)


def _triggered(runs: Sequence[Run]) -> list[Any]:
    """commit.lua's list of the runs a trigger began, each counted on its day's start record
    (``run["start"]``, named by the engine): n, then (uuid, flow, UTC day, created_on)..."""
    out: list[Any] = []
    for r in runs:
        if r.get("trigger") and r.get("start") and not r.get("parent"):
            day = datetime.fromtimestamp(r["created_on"], UTC).strftime("%Y-%m-%d")
            out += [r["start"], r["flow"], day, r["created_on"]]
    return [len(out) // 4, *out]


def _search_changes(c: Commit) -> tuple[list[str], list[str]]:
    """The search index members a commit takes out and puts in (its contact changed)."""
    if c.contact is None:
        return [], []
    before = json.loads(c.contact_before) if c.contact_before else None
    return member_diff(before, c.contact)


def _outbox_flag(message: Mapping[str, Any]) -> str:
    """commit.lua's flag: '1' to send, 's' refused here and counted for its start, '0' kept."""
    if message.get("status") == "queued":
        return "1"
    refused = message.get("status") == "failed" and message.get("direction") == "out"
    return "s" if refused and message.get("start") else "0"
