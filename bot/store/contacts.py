"""Contacts: records, the URN index, the creation-ordered index, compare-and-set writes that
never cross a worker's sprint, and deletion of everything a contact has."""

from __future__ import annotations

import asyncio
import copy
import json
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from bot.core import counters as flowstats
from bot.store.base import dumps
from bot.store.groups import GroupStore
from bot.store.keys import (
    CONTACT_PARTS,
    CONTACTS,
    OPEN,
    SEARCH,
    TIMERS,
    contact_key,
    created_prefix,
    flow_runs_key,
    flow_stats_key,
    index_member,
    members_key,
    run_member,
    urn_key,
)
from bot.store.search import SearchStore, member_diff, members_of


class ContactBusy(Exception):
    """A worker kept these contacts locked longer than an API write waits."""

    def __init__(self, cids: Sequence[str]) -> None:
        super().__init__(f"contacts busy: {', '.join(cids[:5])}")
        self.cids = list(cids)


def _session_wait(raw: bytes | None) -> dict[str, Any] | None:
    """The wait of a stored session (its timer is named by it), if any."""
    if not raw:
        return None
    try:
        wait = json.loads(raw).get("wait")
    except (ValueError, AttributeError):
        return None
    return wait if isinstance(wait, dict) and wait.get("token") else None


def new_contact(urn: str, name: str, now: float) -> dict[str, Any]:
    """The record of a contact made for ``urn`` (its uuid, first, is added by the caller)."""
    return {
        "name": name,
        "urns": [urn],
        "fields": {},
        "groups": [],
        "status": "active",
        "created_on": now,
    }


def _create_call(urn: str, record: dict[str, Any]) -> tuple[list[str], list[Any]]:
    """keys and args of ``contact_for_urn.lua`` creating ``record`` unless one of its URNs
    (``urn`` first, then the record's others) has a contact."""
    keys = [urn_key(urn), contact_key(record["uuid"], "contact"), CONTACTS, SEARCH]
    keys += [urn_key(u) for u in record.get("urns") or [] if u != urn]
    args = [
        record["uuid"],
        dumps(record),
        contact_key("%s", "contact"),
        created_prefix(record.get("created_on")),
        *members_of(record),
    ]
    return keys, args


class ContactStore(SearchStore, GroupStore):
    async def contact_for_urn(
        self, urn: str, name: str = "", now: float = 0.0, **extra: Any
    ) -> tuple[dict[str, Any], bool]:
        """The contact with this URN, created if new; True when it was created. ``urns`` in
        ``extra`` gives a new contact several (``urn`` among them); when another of them has a
        contact already, that one is answered (not created)."""
        cid, created, record = await self._contact_for_urn(urn, name, now, extra)
        if created and record["uuid"] == cid:
            return record, True
        contact = await self.get_contact(cid)
        return (contact if contact is not None else {**record, "uuid": cid}), created

    async def _contact_for_urn(
        self, urn: str, name: str, now: float, extra: dict[str, Any]
    ) -> tuple[str, bool, dict[str, Any]]:
        proposed = str(uuid.uuid4())
        record = {"uuid": proposed, **new_contact(urn, name, now), **extra}
        keys, args = _create_call(urn, record)
        found, created = await self._script("contact_for_urn")(keys=keys, args=args)
        cid = found.decode() if isinstance(found, bytes) else str(found)
        if int(created) == 2:  # the index outlived its record: write the record again
            record["uuid"] = cid
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.set(contact_key(cid, "contact"), dumps(record), nx=True)
                pipe.zadd(CONTACTS, {index_member(record): 0})
                pipe.zadd(SEARCH, dict.fromkeys(members_of(record), 0))
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
            low = "[" + created_prefix(since)
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
        script = self._script("contact_write")
        while pending:
            raws = await self._r.mget([contact_key(c, "contact") for c in pending])
            writes: list[tuple[str, bytes, dict[str, Any], list[str], list[str], Any]] = []
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
                writes.append((cid, raw, new, added, removed, member_diff(old, new)))
            ids = await self.group_ids({g for w in writes for g in w[3]}, create=True, now=now)
            ids.update(await self.group_ids({g for w in writes for g in w[4]} - set(ids)))
            retry: list[str] = []
            if writes:
                async with self._r.pipeline(transaction=False) as pipe:
                    for cid, raw, new, added, removed, (unindex, index) in writes:
                        adds = [ids[g] for g in added if g in ids]
                        rems = [ids[g] for g in removed if g in ids]
                        await script(
                            keys=[contact_key(cid, "lock"), contact_key(cid, "contact"), SEARCH],
                            args=[
                                raw,
                                dumps(new),
                                cid,
                                members_key("%s"),
                                len(adds),
                                *adds,
                                len(rems),
                                *rems,
                                len(unindex),
                                *unindex,
                                len(index),
                                *index,
                            ],
                            client=pipe,
                        )
                    replies = await pipe.execute()
                for (cid, _, new, _, _, _), reply in zip(writes, replies, strict=True):
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
        session_raw = await self._r.get(contact_key(cid, "session"))
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
            SEARCH,
            *members_of(contact),
        ]
        done = await self._script("delete_contact")(keys=[lock], args=args)
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

    async def claim_urns(self, cid: str, urns: Sequence[str]) -> tuple[str, str] | None:
        """Index ``urns`` to contact ``cid``, all or none (the record's ``urns`` list is the
        caller's to change). None when done; else (the URN, its other contact) refusing it."""
        if not urns:
            return None
        keys = [urn_key(u) for u in urns]
        position, owner = await self._script("claim_urns")(
            keys=keys, args=[cid, contact_key("%s", "contact")]
        )
        if int(position) == 0:
            return None
        return urns[int(position) - 1], owner.decode() if isinstance(owner, bytes) else str(owner)

    async def release_urns(self, cid: str, urns: Sequence[str]) -> None:
        """Take ``urns`` out of the index where they point at ``cid`` (a URN the contact lost)."""
        if urns:
            await self._script("release_urns")(keys=[urn_key(u) for u in urns], args=[cid])

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
        script = self._script("contact_for_urn")
        async with self._r.pipeline(transaction=False) as pipe:
            for urn, record in records:
                keys, args = _create_call(urn, record)
                await script(keys=keys, args=args, client=pipe)
            replies = await pipe.execute()
        return [
            (cid.decode() if isinstance(cid, bytes) else str(cid), bool(created))
            for cid, created in replies
        ]
