"""The Redis data layer. Every key name is built here (and in the Lua files beside it).

All keys of one contact share the hash tag ``{c:<uuid>}`` so that on Redis Cluster they live on
one slot and each per-contact step is a single-slot script. Global keys (the work streams, the
timer set, the URN index) are few and named below. Layout, with why, in docs/redis.md.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import ResponseError

from bot.engine import stats as flowstats

READY = "chasqui:ready"  # stream: "contact <uuid> has events queued"
SENDQ = "chasqui:sendq"  # stream: "contact <uuid> has messages in its outbox"
TIMERS = "chasqui:timers"  # sorted set: "<contact>|<kind>|<token>" scored by due time
WORKERS = "workers"  # consumer group on READY
SENDERS = "senders"  # consumer group on SENDQ


STARTQ = "chasqui:startq"  # stream: "start <uuid> has a chunk to expand" (bot/work/starts.py)
STARTERS = "starters"  # consumer group on STARTQ
STARTS = "chasqui:starts"  # sorted set: start uuids by creation time
STARTS_DUE = "chasqui:starts:due"  # sorted set: start uuids by when their next chunk is due


def start_key(sid: str, part: str = "") -> str:
    """A start's hash (request, status, counts); with ``part``: ``seen`` (set of contacts
    already decided), ``contacts`` (hash contact -> outcome), ``targets`` (set of explicitly
    named contacts), ``lock`` (the process expanding it)."""
    return f"chasqui:start:{sid}:{part}" if part else f"chasqui:start:{sid}"


def idempotency_key(key: str) -> str:
    return f"chasqui:starts:idem:{key}"


CONTACTS = "chasqui:contacts"  # sorted set, all scores 0: "<created_on>|<uuid>", listed by lex
GROUPS = "chasqui:groups"  # hash: group name -> group id
GROUP_SEQ = "chasqui:groups:seq"  # counter: the next group id


def group_key(gid: str) -> str:
    """A group's hash: name, created_on."""
    return f"chasqui:group:{gid}"


def members_key(gid: str) -> str:
    """The set of the uuids of a group's members."""
    return f"chasqui:group:{gid}:members"


RUN_FLOWS = "chasqui:runs:flows"  # set: the ids of the flows that have runs indexed
OPEN = "open"  # the run index state of runs that have not ended (active or waiting)


def flow_runs_key(flow: str, state: str) -> str:
    """A flow's runs in one state (``open``, or how they ended): sorted set, all scores 0,
    members from :func:`run_member`; kept in step by the commit."""
    return f"chasqui:flow:{flow}:runs:{state}"


def flow_stats_key(flow: str) -> str:
    """A flow's counters (hash; the fields are described in bot/engine/stats.py)."""
    return f"chasqui:flow:{flow}:stats"


def run_member(cid: str, run: dict[str, Any]) -> str:
    """A run's entry in its flow's index: creation time (as in CONTACTS), contact, run -- lex
    order is creation order, and the entry says where the run is kept."""
    return f"{_created(run.get('created_on')):017.3f}|{cid}|{run['uuid']}"


def index_member(contact: dict[str, Any]) -> str:
    """A contact's entry in CONTACTS: fixed-width creation time then uuid, so lex order is
    creation order and a member is a stable paging cursor."""
    return f"{_created(contact.get('created_on')):017.3f}|{contact['uuid']}"


def _created(value: Any) -> float:
    try:
        return max(float(value or 0), 0.0)
    except (TypeError, ValueError):
        return 0.0


def _session_wait(raw: bytes | None) -> dict[str, Any] | None:
    """The wait of a stored session (its timer is named by it), if any."""
    if not raw:
        return None
    try:
        wait = json.loads(raw).get("wait")
    except (ValueError, AttributeError):
        return None
    return wait if isinstance(wait, dict) and wait.get("token") else None


class ContactBusy(Exception):
    """A worker kept these contacts locked longer than an API write waits."""

    def __init__(self, cids: Sequence[str]) -> None:
        super().__init__(f"contacts busy: {', '.join(cids[:5])}")
        self.cids = list(cids)


# The per-contact keys (besides the lock and one ``run:<uuid>`` per ended run).
CONTACT_PARTS = (
    "contact",
    "session",
    "q",
    "runs",
    "msgs",
    "history",
    "outbox",
    "sendlock",
    "console",
)


def contact_key(cid: str, part: str) -> str:
    return f"{{c:{cid}}}:{part}"


def urn_key(urn: str) -> str:
    return f"chasqui:urn:{urn}"


def ext_key(channel: str, external_id: str) -> str:
    """A provider's message id (e.g. a wamid) -> "<contact uuid> <message uuid>"."""
    return f"chasqui:ext:{channel}:{external_id}"


def templates_key(channel: str) -> str:
    return f"chasqui:templates:{channel}"


# A contact's history is bounded: its last messages and runs are kept (the API shows fewer),
# older ones are dropped at the next commit, so Redis does not grow with all traffic ever.
HISTORY_KEPT = 1000
RUNS_KEPT = 200

EXTERNAL_ID_TTL = 30 * 86400  # statuses keep arriving for days; Meta retries for up to 7


def console_key(cid: str) -> str:
    return contact_key(cid, "console")


QUEUE_PATTERN = contact_key("%s", "q")
START_PATTERNS = (start_key("%s"), start_key("%s", "contacts"))


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@dataclass
class Claim:
    """A contact whose lock we hold, with its queued events and state as read."""

    cid: str
    token: str
    events: list[dict[str, Any]]
    contact: dict[str, Any] | None
    session_raw: bytes
    contact_raw: bytes = b""  # as read: a sprint changes ``contact`` in place


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


@dataclass
class Commit:
    cid: str
    token: str
    consumed: int
    contact: dict[str, Any] | None = None  # None: unchanged
    session: str | None = None  # None: unchanged
    new_runs: list[dict[str, Any]] = field(default_factory=list)
    ended_runs: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    timers_remove: list[str] = field(default_factory=list)
    timers_add: dict[str, float] = field(default_factory=dict)
    # group name -> True (add) / False (remove): the group sets follow the contact's groups
    groups: dict[str, bool] = field(default_factory=dict)
    counts: dict[tuple[str, str], int] = field(default_factory=dict)  # (flow, field) -> change
    now: float = 0.0


def _script(redis: Redis, name: str) -> AsyncScript:
    source = resources.files("bot.store").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")
    return redis.register_script(source)


class Store:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        # redis-py types replies as bytes/str unions; this client always answers bytes.
        self._r: Any = redis
        names = (
            "claim",
            "commit",
            "enqueue",
            "fire_timers",
            "take_outbox",
            "finish_sends",
            "contact_for_urn",
            "apply_status",
            "rate_limit",
            "enqueue_once",
            "extend_lock",
            "contact_write",
            "group_ensure",
            "delete_contact",
        )
        self._scripts = {name: _script(redis, name) for name in names}

    async def setup(self) -> None:
        """Create the consumer groups (once; a second process finds them)."""
        for stream, group in ((READY, WORKERS), (SENDQ, SENDERS)):
            try:
                await self._r.xgroup_create(stream, group, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    # -- contacts ----------------------------------------------------------------------------
    async def contact_for_urn(
        self, urn: str, name: str = "", now: float = 0.0, **extra: Any
    ) -> tuple[dict[str, Any], bool]:
        """The contact with this URN, created if new; True when it was created."""
        cid, created, record = await self._contact_for_urn(urn, name, now, extra)
        if created and record["uuid"] == cid:
            return record, True
        contact = await self.get_contact(cid)
        return (contact if contact is not None else {**record, "uuid": cid}), created

    async def ensure_contact(self, urn: str, name: str = "", now: float = 0.0) -> str:
        """The uuid of the URN's contact, created if new: one round trip (the webhook path)."""
        cid, _, _ = await self._contact_for_urn(urn, name, now, {})
        return cid

    async def _contact_for_urn(
        self, urn: str, name: str, now: float, extra: dict[str, Any]
    ) -> tuple[str, bool, dict[str, Any]]:
        proposed = str(uuid.uuid4())
        record = {
            "uuid": proposed,
            "name": name,
            "urns": [urn],
            "fields": {},
            "groups": [],
            "status": "active",
            "created_on": now,
            **extra,
        }
        found, created = await self._scripts["contact_for_urn"](
            keys=[urn_key(urn), contact_key(proposed, "contact"), CONTACTS],
            args=[
                proposed,
                dumps(record),
                contact_key("%s", "contact"),
                f"{_created(record.get('created_on')):017.3f}",
            ],
        )
        cid = found.decode() if isinstance(found, bytes) else str(found)
        if int(created) == 2:  # the index outlived its record: write the record again
            record["uuid"] = cid
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.set(contact_key(cid, "contact"), dumps(record), nx=True)
                pipe.zadd(CONTACTS, {f"{_created(record.get('created_on')):017.3f}|{cid}": 0})
                await pipe.execute()
        return cid, bool(created), record

    async def get_contact(self, cid: str) -> dict[str, Any] | None:
        raw = await self._r.get(contact_key(cid, "contact"))
        return json.loads(raw) if raw else None

    async def contact_id_for_urn(self, urn: str) -> str | None:
        raw = await self._r.get(urn_key(urn))
        return raw.decode() if raw else None

    async def contacts(self, cids: Sequence[str]) -> list[dict[str, Any] | None]:
        if not cids:
            return []
        raws = await self._r.mget([contact_key(c, "contact") for c in cids])
        return [json.loads(r) if r else None for r in raws]

    async def contact_page(self, after: str | None, since: float | None, count: int) -> list[str]:
        """Up to ``count`` index members (creation order) after the cursor ``after``, or from
        ``since`` (created at or after), or from the start."""
        if after:
            low = "(" + after
        elif since is not None:
            low = f"[{_created(since):017.3f}"
        else:
            low = "-"
        members = await self._r.zrangebylex(CONTACTS, low, "+", 0, count)
        return [m.decode() for m in members]

    async def update_contacts(
        self,
        cids: Sequence[str],
        change: Callable[[dict[str, Any]], dict[str, Any] | None],
        now: float,
        wait: float = 5.0,
    ) -> dict[str, dict[str, Any] | None]:
        """Apply ``change`` (given a copy; returns the new record, or None for no change) to
        each contact, never overwriting a worker's sprint nor being overwritten by it: each write
        is a compare-and-set that also refuses while the contact's lock is held, retried after a
        short pause. Group sets follow the ``groups`` list. None for contacts that do not exist;
        raises :class:`ContactBusy` for those still locked after ``wait`` seconds."""
        results: dict[str, dict[str, Any] | None] = {}
        pending = list(dict.fromkeys(cids))
        give_up = time.monotonic() + wait
        pause = 0.002
        script = self._scripts["contact_write"]
        while pending:
            raws = await self._r.mget([contact_key(c, "contact") for c in pending])
            writes: list[tuple[str, bytes, dict[str, Any], list[str], list[str]]] = []
            for cid, raw in zip(pending, raws, strict=True):
                if raw is None:
                    results[cid] = None
                    continue
                old = json.loads(raw)
                new = change(copy.deepcopy(old))
                if new is None:
                    results[cid] = old
                    continue
                new["modified_on"] = now
                before, after = list(old.get("groups") or []), list(new.get("groups") or [])
                added = [g for g in after if g not in before]
                removed = [g for g in before if g not in after]
                writes.append((cid, raw, new, added, removed))
            ids = await self.group_ids({g for w in writes for g in w[3]}, create=True, now=now)
            ids.update(await self.group_ids({g for w in writes for g in w[4]} - set(ids)))
            retry: list[str] = []
            if writes:
                async with self._r.pipeline(transaction=False) as pipe:
                    for cid, raw, new, added, removed in writes:
                        adds = [ids[g] for g in added if g in ids]
                        rems = [ids[g] for g in removed if g in ids]
                        await script(
                            keys=[contact_key(cid, "lock"), contact_key(cid, "contact")],
                            args=[
                                raw,
                                dumps(new),
                                cid,
                                members_key("%s"),
                                len(adds),
                                *adds,
                                len(rems),
                                *rems,
                            ],
                            client=pipe,
                        )
                    replies = await pipe.execute()
                for (cid, _, new, _, _), reply in zip(writes, replies, strict=True):
                    if reply == b"ok":
                        results[cid] = new
                    else:
                        retry.append(cid)
            if retry:
                if time.monotonic() > give_up:
                    raise ContactBusy(retry)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.05)
            pending = retry
        return results

    async def delete_contact(self, cid: str, wait: float = 5.0) -> bool:
        """Delete a contact and its history: every ``{c:<uuid>}:*`` key, its timers, its URN
        index entries, its group memberships. Takes the contact's lock first, so no sprint is
        half-way. False if there was no such contact; ContactBusy if it stayed locked."""
        token = uuid.uuid4().hex
        lock = contact_key(cid, "lock")
        give_up = time.monotonic() + wait
        while not await self._r.set(lock, token, nx=True, px=60_000):
            if time.monotonic() > give_up:
                raise ContactBusy([cid])
            await asyncio.sleep(0.01)
        contact = await self.get_contact(cid)
        if contact is None:
            await self._r.delete(lock)
            return False
        # every key a contact can have, named here (a SCAN would walk the whole keyspace)
        runs = [r.decode() for r in await self._r.lrange(contact_key(cid, "runs"), 0, -1)]
        keys = [contact_key(cid, part) for part in CONTACT_PARTS]
        keys += [contact_key(cid, f"run:{r}") for r in runs]
        timers: list[str] = []
        session_raw = await self.session_raw(cid)
        waiting = _session_wait(session_raw)
        if waiting:
            timers.append(f"{cid}|{waiting.get('timer', 'expire')}|{waiting['token']}")
        unindex, uncount = await self._runs_of_deleted(cid, session_raw, runs, waiting)
        outbox = await self._r.lrange(contact_key(cid, "outbox"), 0, -1)
        timers += [f"{cid}|send|{m.decode()}" for m in outbox]
        urns = [urn_key(u) for u in contact.get("urns") or []]
        ids = await self.group_ids(set(contact.get("groups") or []))
        args: list[Any] = [
            token,
            cid,
            CONTACTS,
            index_member(contact),
            TIMERS,
            members_key("%s"),
            len(keys),
            *keys,
            len(urns),
            *urns,
            len(ids),
            *ids.values(),
            len(timers),
            *timers,
            len(unindex),
            *(part for pair in unindex for part in pair),
            len(uncount),
            *(part for pair in uncount for part in pair),
        ]
        done = await self._scripts["delete_contact"](keys=[lock], args=args)
        return bool(done)

    async def _runs_of_deleted(
        self, cid: str, session_raw: bytes | None, runs: list[str], wait: dict[str, Any] | None
    ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """What deleting a contact takes out of the flows' run indexes -- (key, member) -- and
        their waiting counters -- (stats key, field). Its finished runs still count in totals."""
        unindex: list[tuple[str, str]] = []
        try:
            frames = json.loads(session_raw).get("frames", []) if session_raw else []
        except (ValueError, AttributeError):
            frames = []
        for frame in frames:
            run = frame.get("run") or {}
            if run.get("uuid") and run.get("flow"):
                unindex.append((flow_runs_key(run["flow"], OPEN), run_member(cid, run)))
        raws = await self._r.mget([contact_key(cid, f"run:{r}") for r in runs]) if runs else []
        for raw in raws:
            if raw:
                run = json.loads(raw)
                unindex.append((flow_runs_key(run["flow"], run["status"]), run_member(cid, run)))
        uncount = []
        if wait and wait.get("flow"):
            uncount.append((flow_stats_key(wait["flow"]), flowstats.waiting(wait["node"])))
        return unindex, uncount

    # -- groups ------------------------------------------------------------------------------
    async def group_ids(
        self, names: set[str] | Sequence[str], create: bool = False, now: float = 0.0
    ) -> dict[str, str]:
        """Group name -> id for the groups that exist (all of them, created, with ``create``)."""
        names = list(names)
        if not names:
            return {}
        found = await self._r.hmget(GROUPS, names)
        ids = {n: i.decode() for n, i in zip(names, found, strict=True) if i}
        if create:
            for name in names:
                if name not in ids:
                    ids[name], _ = await self.ensure_group(name, now)
        return ids

    async def ensure_group(self, name: str, now: float) -> tuple[str, bool]:
        gid, created = await self._scripts["group_ensure"](
            keys=[GROUPS, GROUP_SEQ], args=[name, now, group_key("%s"), str(uuid.uuid4())]
        )
        return (gid.decode() if isinstance(gid, bytes) else str(gid)), bool(created)

    async def group_by_ref(self, ref: str) -> dict[str, Any] | None:
        """The group with this uuid (its id), else with this name: uuid, id, name, created_on,
        count (members); None when there is none."""
        gid: str | None = ref if await self._r.exists(group_key(ref)) else None
        if gid is None:
            found = await self._r.hget(GROUPS, ref)
            gid = found.decode() if found else None
        if gid is None:
            return None
        async with self._r.pipeline(transaction=False) as pipe:
            pipe.hmget(group_key(gid), ["name", "created_on"])
            pipe.scard(members_key(gid))
            (name, created), count = await pipe.execute()
        if name is None:  # dropped meanwhile
            return None
        return {
            "uuid": gid,
            "id": gid,
            "name": name.decode(),
            "created_on": float(created or 0),
            "count": int(count),
        }

    async def groups(self) -> list[dict[str, Any]]:
        """Every group: uuid (= id), name, created_on, count (members), by name."""
        index = await self._r.hgetall(GROUPS)
        items = sorted((n.decode(), i.decode()) for n, i in index.items())
        async with self._r.pipeline(transaction=False) as pipe:
            for _, gid in items:
                pipe.hget(group_key(gid), "created_on")
                pipe.scard(members_key(gid))
            replies = await pipe.execute()
        return [
            {
                "uuid": gid,
                "id": gid,
                "name": name,
                "created_on": float(replies[2 * k] or 0),
                "count": int(replies[2 * k + 1]),
            }
            for k, (name, gid) in enumerate(items)
        ]

    async def group_members(self, gid: str, batch: int = 1000) -> AsyncIterator[list[str]]:
        """A group's member uuids, a batch at a time (SSCAN: never the whole set at once)."""
        cursor = 0
        while True:
            cursor, found = await self._r.sscan(members_key(gid), cursor, count=batch)
            if found:
                yield [m.decode() for m in found]
            if cursor == 0:
                return

    async def is_member(self, gid: str, cids: Sequence[str]) -> list[bool]:
        if not cids:
            return []
        return [bool(x) for x in await self._r.smismember(members_key(gid), list(cids))]

    async def rename_group(self, gid: str, old: str, new: str) -> bool:
        """Point the new name at the group; False if the new name is taken."""
        if not await self._r.hsetnx(GROUPS, new, gid):
            return False
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.hdel(GROUPS, old)
            pipe.hset(group_key(gid), "name", new)
            await pipe.execute()
        return True

    async def drop_group(self, gid: str, name: str) -> None:
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.hdel(GROUPS, name)
            pipe.delete(group_key(gid), members_key(gid))
            await pipe.execute()

    async def add_memberships(self, pairs: Sequence[tuple[str, str]]) -> None:
        """SADD (group id, contact uuid) pairs in one pipeline (new contacts of an import)."""
        if pairs:
            async with self._r.pipeline(transaction=False) as pipe:
                for gid, cid in pairs:
                    pipe.sadd(members_key(gid), cid)
                await pipe.execute()

    async def contact_ids_for_urns(self, urns: Sequence[str]) -> list[str | None]:
        if not urns:
            return []
        raws = await self._r.mget([urn_key(u) for u in urns])
        return [r.decode() if r else None for r in raws]

    async def create_contacts(
        self, records: Sequence[tuple[str, dict[str, Any]]]
    ) -> list[tuple[str, bool]]:
        """Create contacts for (urn, record) in one pipeline; (uuid, created) each. A URN that
        has a contact keeps it (created False): the caller updates that one instead."""
        script = self._scripts["contact_for_urn"]
        async with self._r.pipeline(transaction=False) as pipe:
            for urn, record in records:
                await script(
                    keys=[urn_key(urn), contact_key(record["uuid"], "contact"), CONTACTS],
                    args=[
                        record["uuid"],
                        dumps(record),
                        contact_key("%s", "contact"),
                        f"{_created(record.get('created_on')):017.3f}",
                    ],
                    client=pipe,
                )
            replies = await pipe.execute()
        return [
            (cid.decode() if isinstance(cid, bytes) else str(cid), bool(created))
            for cid, created in replies
        ]

    # -- events in ---------------------------------------------------------------------------
    async def enqueue(self, cid: str, event: dict[str, Any]) -> None:
        await self._scripts["enqueue"](
            keys=[contact_key(cid, "q"), READY], args=[dumps(event), cid]
        )

    async def enqueue_once(self, dedup: str, ttl: int, cid: str, event: dict[str, Any]) -> bool:
        """Queue ``event`` unless ``dedup`` was seen within ``ttl`` seconds; True if queued."""
        queued = await self._scripts["enqueue_once"](
            keys=[f"chasqui:seen:{dedup}", contact_key(cid, "q"), READY],
            args=[ttl, dumps(event), cid],
        )
        return bool(queued)

    async def read_ready(
        self, consumer: str, count: int, block_ms: int | None
    ) -> list[tuple[bytes, str]]:
        """Signals for this consumer; ``block_ms=None`` returns at once (0 would block forever)."""
        return await self._read(READY, WORKERS, consumer, count, block_ms)

    async def reclaim_ready(
        self, consumer: str, min_idle_ms: int, count: int
    ) -> list[tuple[bytes, str]]:
        """Entries a dead worker took and never acknowledged."""
        return await self._reclaim(READY, WORKERS, consumer, min_idle_ms, count)

    async def _read(
        self, stream: str, group: str, consumer: str, count: int, block_ms: int | None
    ) -> list[tuple[bytes, str]]:
        """(entry id, contact uuid) of new signals on ``stream`` for this consumer."""
        reply = await self._r.xreadgroup(group, consumer, {stream: ">"}, count, block_ms)
        return [(eid, fields[b"c"].decode()) for _, entries in reply for eid, fields in entries]

    async def _reclaim(
        self, stream: str, group: str, consumer: str, min_idle_ms: int, count: int
    ) -> list[tuple[bytes, str]]:
        reply = await self._r.xautoclaim(stream, group, consumer, min_idle_ms, "0", count)
        return [(eid, fields[b"c"].decode()) for eid, fields in reply[1] if fields]

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

    async def ack(self, stream: str, group: str, ids: Sequence[bytes]) -> None:
        if ids:
            async with self._r.pipeline(transaction=False) as pipe:
                pipe.xack(stream, group, *ids)
                pipe.xdel(stream, *ids)
                await pipe.execute()

    async def claim(self, cids: Sequence[str], ttl_ms: int, max_events: int) -> list[Claim | None]:
        script = self._scripts["claim"]
        tokens = [uuid.uuid4().hex for _ in cids]
        async with self._r.pipeline(transaction=False) as pipe:
            for cid, token in zip(cids, tokens, strict=True):
                keys = [contact_key(cid, p) for p in ("lock", "q", "contact", "session")]
                await script(
                    keys=[*keys, TIMERS], args=[token, ttl_ms, max_events, cid], client=pipe
                )
            replies = await pipe.execute()
        claims: list[Claim | None] = []
        for cid, token, reply in zip(cids, tokens, replies, strict=True):
            if not reply:
                claims.append(None)
                continue
            events, contact, session = reply
            claims.append(
                Claim(
                    cid,
                    token,
                    [json.loads(e) for e in events],
                    json.loads(contact) if contact else None,
                    session,
                    contact or b"",
                )
            )
        return claims

    async def extend_lock(self, cid: str, token: str, ttl_ms: int) -> bool:
        """Renew a contact's lock we still hold (before a long webhook call)."""
        return bool(
            await self._scripts["extend_lock"](
                keys=[contact_key(cid, "lock")], args=[token, ttl_ms]
            )
        )

    async def commit(self, commits: Sequence[Commit]) -> list[int]:
        """Write each sprint's effects; -1 for one whose lock was lost (nothing written)."""
        script = self._scripts["commit"]
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
                    args += [m["uuid"], dumps(m), "1" if m.get("status") == "queued" else "0"]
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
                args += [HISTORY_KEPT, RUNS_KEPT, contact_key(c.cid, "run:%s")]
                await script(keys=keys, args=args, client=pipe)
            return [int(r) for r in await pipe.execute()]

    async def fire_timers(self, now: float, limit: int = 1000) -> int:
        fired = await self._scripts["fire_timers"](
            keys=[TIMERS, READY, SENDQ], args=[now, limit, QUEUE_PATTERN]
        )
        return int(fired)

    # -- sending -----------------------------------------------------------------------------
    async def read_sendq(
        self, consumer: str, count: int, block_ms: int | None
    ) -> list[tuple[bytes, str]]:
        return await self._read(SENDQ, SENDERS, consumer, count, block_ms)

    async def reclaim_sendq(
        self, consumer: str, min_idle_ms: int, count: int
    ) -> list[tuple[bytes, str]]:
        return await self._reclaim(SENDQ, SENDERS, consumer, min_idle_ms, count)

    async def take_outboxes(
        self, cids: Sequence[str], token: str, ttl_ms: int, max_msgs: int, now: float
    ) -> list[list[tuple[dict[str, Any], dict[str, Any]]] | None]:
        """Per contact: None if another sender holds it, else its queued (message, state)."""
        script = self._scripts["take_outbox"]
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

    async def finish_sends_many(
        self, token: str, contacts: Sequence[tuple[str, Sequence[SendOutcome]]]
    ) -> None:
        """Record what became of each send, release the contacts, in one pipeline.

        A sent message's provider id is indexed first, so a status webhook that races our
        bookkeeping still finds it; statuses go through the same monotonic script as webhooks.
        """
        if not contacts:
            return
        apply, finish = self._scripts["apply_status"], self._scripts["finish_sends"]
        async with self._r.pipeline(transaction=False) as pipe:
            for cid, outcomes in contacts:
                status_keys = [contact_key(cid, "msgs"), contact_key(cid, "q"), READY]
                done: list[str] = []
                hold = False
                for o in outcomes:
                    mid = o.message["uuid"]
                    extra: dict[str, Any] = {"attempts": o.attempts}
                    if o.external_id:
                        extra["external_id"] = o.external_id
                        pipe.set(
                            ext_key(o.message.get("channel") or "", o.external_id),
                            f"{cid} {mid}",
                            ex=EXTERNAL_ID_TTL,
                        )
                    if o.status == "skip":  # already sent by an earlier take: just drop it
                        done.append(mid)
                        continue
                    if o.status == "retry":
                        hold = True
                        extra.update(retry_at=o.retry_at, last_error=o.error)
                        pipe.zadd(TIMERS, {f"{cid}|send|{mid}": o.retry_at or o.at})
                        args = [mid, "queued", o.at, "", cid, dumps(extra)]
                    else:
                        done.append(mid)
                        error = dumps(o.error) if o.error else ""
                        args = [mid, o.status, o.at, error, cid, dumps(extra), *START_PATTERNS]
                    await apply(keys=status_keys, args=args, client=pipe)
                keys = [contact_key(cid, "sendlock"), contact_key(cid, "outbox"), SENDQ]
                await finish(keys=keys, args=[token, cid, "1" if hold else "0", *done], client=pipe)
            await pipe.execute()

    async def index_external(self, message: dict[str, Any], external_id: str) -> None:
        """Map a provider's id to the message as soon as the send is accepted."""
        key = ext_key(message.get("channel") or "", external_id)
        await self._r.set(key, f"{message['contact']} {message['uuid']}", ex=EXTERNAL_ID_TTL)

    async def apply_status(
        self,
        channel: str,
        external_id: str,
        status: str,
        at: float,
        error: dict[str, Any] | None = None,
    ) -> str:
        """A provider's status for a message we sent: 'unknown' if we don't know that id."""
        (result,) = await self.apply_statuses(channel, [(external_id, status, at, error)])
        return result

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
            script = self._scripts["apply_status"]
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
        wait = await self._scripts["rate_limit"](
            keys=[f"chasqui:rate:{bucket}"], args=[1.0 / per_second, burst]
        )
        return float(wait)

    async def first_time(self, key: str, ttl: int) -> bool:
        """True the first time ``key`` is seen within ``ttl`` seconds (webhook dedup)."""
        return bool(await self._r.set(f"chasqui:seen:{key}", b"1", nx=True, ex=ttl))

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

    async def templates(self, channel: str) -> list[dict[str, Any]]:
        raws = await self._r.hvals(templates_key(channel))
        return sorted((json.loads(r) for r in raws), key=lambda t: (t["name"], t["language"]))

    # -- reading history ---------------------------------------------------------------------
    async def session_raw(self, cid: str) -> bytes | None:
        raw: bytes | None = await self._r.get(contact_key(cid, "session"))
        return raw

    async def ended_runs(self, cid: str, limit: int = 50) -> list[dict[str, Any]]:
        ids = await self._r.lrange(contact_key(cid, "runs"), 0, limit - 1)
        if not ids:
            return []
        raws = await self._r.mget([contact_key(cid, f"run:{i.decode()}") for i in ids])
        return [json.loads(r) for r in raws if r]

    async def indexed_flows(self) -> list[str]:
        return sorted(f.decode() for f in await self._r.smembers(RUN_FLOWS))

    async def run_index_page(
        self, keys: Sequence[str], before: str | None, count: int
    ) -> list[tuple[str, bool]]:
        """The newest ``count`` entries strictly older than ``before`` across these run index
        keys, as (member, the run is open)."""
        top = f"({before}" if before else "+"
        async with self._r.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.zrevrangebylex(key, top, "-", start=0, num=count)
            replies = await pipe.execute()
        found: dict[str, bool] = {}
        for key, members in zip(keys, replies, strict=True):
            for member in members:
                found[member.decode()] = key.endswith(f":{OPEN}")
        return sorted(found.items(), reverse=True)[:count]

    async def runs_at(self, entries: Sequence[tuple[str, bool]]) -> list[dict[str, Any] | None]:
        """The runs index entries point at: an open run from its contact's session, an ended
        one from its record; each with its ``contact``. None where it is gone meanwhile."""
        async with self._r.pipeline(transaction=False) as pipe:
            for member, is_open in entries:
                _, cid, rid = member.split("|")
                pipe.get(contact_key(cid, "session" if is_open else f"run:{rid}"))
            raws = await pipe.execute()
        runs: list[dict[str, Any] | None] = []
        for (member, is_open), raw in zip(entries, raws, strict=True):
            _, cid, rid = member.split("|")
            run: dict[str, Any] | None = None
            if raw and is_open:
                frames = json.loads(raw).get("frames", [])
                run = next((f["run"] for f in frames if f["run"]["uuid"] == rid), None)
            elif raw:
                run = json.loads(raw)
            runs.append({**run, "contact": cid} if run else None)
        return runs

    async def flow_counters(self, flow: str) -> tuple[dict[str, int], int]:
        """A flow's counters, and how many of its runs are open now."""
        async with self._r.pipeline(transaction=False) as pipe:
            pipe.hgetall(flow_stats_key(flow))
            pipe.zcard(flow_runs_key(flow, OPEN))
            counters, open_runs = await pipe.execute()
        return {k.decode(): int(v) for k, v in counters.items()}, int(open_runs)

    async def run_ids(self, cid: str, limit: int = 50) -> list[str]:
        return [i.decode() for i in await self._r.lrange(contact_key(cid, "runs"), 0, limit - 1)]

    async def messages(self, cid: str, limit: int = 100) -> list[dict[str, Any]]:
        ids = await self._r.lrange(contact_key(cid, "history"), -limit, -1)
        if not ids:
            return []
        async with self._r.pipeline(transaction=False) as pipe:
            pipe.hmget(contact_key(cid, "msgs"), ids)
            pipe.hmget(contact_key(cid, "msgs"), [i + b":s" for i in ids])
            raws, states = await pipe.execute()
        messages = []
        for raw, state in zip(raws, states, strict=True):
            if raw:
                message = json.loads(raw)
                message.update(json.loads(state) if state else {})
                messages.append(message)
        return messages

    async def console_append(self, cid: str, message: dict[str, Any]) -> None:
        await self._r.xadd(console_key(cid), {"m": dumps(message)}, maxlen=1000, approximate=True)

    async def console_read(
        self, cid: str, last_id: str, block_ms: int
    ) -> list[tuple[str, dict[str, Any]]]:
        reply = await self._r.xread({console_key(cid): last_id}, count=100, block=block_ms)
        return [(eid.decode(), json.loads(f[b"m"])) for _, entries in reply for eid, f in entries]
