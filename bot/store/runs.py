"""Reading what the commit wrote: sessions, ended runs, the flows' run indexes and counters,
a contact's message history."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from bot.store.base import StoreBase
from bot.store.keys import OPEN, RUN_FLOWS, contact_key, flow_runs_key, flow_stats_key


class RunStore(StoreBase):
    async def session_raw(self, cid: str) -> bytes | None:
        raw: bytes | None = await self._r.get(contact_key(cid, "session"))
        return raw

    async def in_flow(self, cids: Sequence[str]) -> list[bool]:
        """Whether each contact is in a flow now (its session has a run)."""
        if not cids:
            return []
        raws = await self._r.mget([contact_key(c, "session") for c in cids])
        return [bool(raw and json.loads(raw).get("frames")) for raw in raws]

    async def ended_runs(self, cid: str, limit: int = 50) -> list[dict[str, Any]]:
        ids = await self._r.lrange(contact_key(cid, "runs"), 0, limit - 1)
        if not ids:
            return []
        raws = await self._r.mget([contact_key(cid, f"run:{i.decode()}") for i in ids])
        return [json.loads(r) for r in raws if r]

    async def indexed_flows(self) -> list[str]:
        return sorted(f.decode() for f in await self._r.smembers(RUN_FLOWS))

    async def run_index_page(
        self,
        flows: Sequence[str],
        open_runs: bool,
        ended: Sequence[str],
        before: str | None,
        count: int,
    ) -> list[tuple[str, bool]]:
        """The newest ``count`` entries strictly older than ``before`` in these flows' run
        indexes -- of the open runs (``open_runs``) and of those ended with a status in
        ``ended`` -- as (member, the run is open)."""
        states = ([OPEN] if open_runs else []) + list(ended)
        keys = [(flow_runs_key(flow, state), state == OPEN) for flow in flows for state in states]
        if not keys:
            return []
        top = f"({before}" if before else "+"
        async with self._r.pipeline(transaction=False) as pipe:
            for key, _ in keys:
                pipe.zrevrangebylex(key, top, "-", start=0, num=count)
            replies = await pipe.execute()
        found: dict[str, bool] = {}
        for (_, is_open), members in zip(keys, replies, strict=True):
            for member in members:
                found[member.decode()] = is_open
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
