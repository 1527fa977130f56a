"""Starts: a flow started for many contacts (given, by URN, and groups), in the background.

A start is a hash (``start_key(uuid)``) holding the request, its status and its counts. Its
work is a stream, ``STARTQ``, that every ``chasqui serve`` process consumes (consumer group
``STARTERS``): an entry says "expand the next chunk of start X". A chunk is up to ``chunk``
contacts read with SSCAN from the start's sources (the set of contacts it names, then each
group's member set); the SSCAN cursor is saved on the start after each chunk, so a crash
resumes where it was, and a replayed chunk changes nothing: each contact is decided by
``start_one.lua``, whose SADD to the start's ``seen`` set answers 0 the second time. An accepted
contact gets a ``start`` event through its ordinary queue (its lock and ordering apply).

Before each chunk the expander waits while the ready stream holds more than
``ready_threshold`` signals: replies and single starts never queue behind a big expansion.
This module decides; bot/store/starts.py keeps (every key named above lives there).
See docs/starts.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from bot.core.clock import Clock
from bot.engine.apply import Engine
from bot.engine.events import Start
from bot.engine.sprint import REFUSED
from bot.flow.files import Flow
from bot.store import Store
from bot.store.redisconn import once_reachable
from bot.work.flowcheck import flow_template_problems
from channels.protocol import Channel

log = logging.getLogger("chasqui.starts")

PENDING, STARTING, COMPLETED, FAILED, CANCELLED = (
    "pending",
    "starting",
    "completed",
    "failed",
    "cancelled",
)
STATUSES = (PENDING, STARTING, COMPLETED, FAILED, CANCELLED)
FINISHED = (COMPLETED, FAILED, CANCELLED)
SKIP_REASONS = ("opted_out", "blocked", "no_route", "already_started", "in_other_flow")


@dataclass(frozen=True)
class StartSettings:
    chunk: int = 500  # contacts per chunk (SSCAN COUNT: about this many)
    ready_threshold: int = 2000  # wait while the ready stream holds more signals than this
    reclaim_idle_ms: int = 30_000  # a chunk entry unacknowledged this long was a crash
    lock_ms: int = 30_000  # one process expands a given start at a time
    outage_wait: float = 60.0  # how long a chunk waits for an unreachable Redis to come back


def decide(
    engine: Engine,
    flow_id: str,
    contact: dict[str, Any] | None,
    session_raw: bytes | None,
    flows_run: set[str],
    restart_participants: bool,
    exclude_active: bool,
) -> tuple[str, str]:
    """(outcome, reason) for one contact: started, skipped (reason), failed (reason)."""
    if contact is None or contact.get("deleted"):
        return "failed", "unknown_contact"
    status = contact.get("status", "active")
    if status in ("opted_out", "blocked"):
        return "skipped", str(status)
    if engine.route_for(contact) is None:
        return "skipped", "no_route"
    frames: list[dict[str, Any]] = json.loads(session_raw).get("frames", []) if session_raw else []
    if not restart_participants and (
        flow_id in flows_run or any(f.get("flow") == flow_id for f in frames)
    ):
        return "skipped", "already_started"
    if exclude_active and frames and frames[0].get("flow") != flow_id:
        return "skipped", "in_other_flow"
    return "started", ""


def opening_template(flow: Flow) -> dict[str, Any] | None:
    """The first template the flow sends before it waits for a reply (None: text, or none)."""
    seen: set[str] = set()
    todo = [flow.first]
    while todo:
        node_id = todo.pop(0)
        if node_id in seen or node_id not in flow.nodes:
            continue
        seen.add(node_id)
        node = flow.nodes[node_id]
        if node.body.WAITS:
            continue
        template = getattr(node.body, "template", None) if node.kind == "send_message" else None
        if template is not None:
            return {
                "name": template.name,
                "language": template.language or flow.language,
                "node": node.id,
            }
        todo.extend(t for t in node.exits().values() if t)
    return None


FAILURES = {
    **REFUSED,
    "unknown_contact": "no such contact (or it was deleted)",
}
"""Failure reasons decided before any channel, in words; a channel's or the provider's
failures carry their own message."""


def explain(outcomes: list[dict[str, str]]) -> list[dict[str, str]]:
    """Per-contact outcomes with the human message of each failure (the stored one, else the
    words of a reason decided here, else the reason itself)."""
    for item in outcomes:
        if item["status"] == "failed" and "message" not in item:
            reason = item.get("reason", "")
            item["message"] = FAILURES.get(reason, reason)
    return outcomes


REFUSAL_CODES = {
    "template_not_found": "template_not_found",
    "template_not_approved": "template_not_approved",
    "template_paused": "template_not_approved",
}
"""A start refused for its opening template answers one of three codes: not found, not
approved (paused too), and anything else about its parameters is ``template_params_mismatch``."""


def opening_problem(flow: Flow, channels: list[Channel]) -> tuple[str, str, dict[str, Any]] | None:
    """(code, message, details) when the template the flow opens with cannot be sent on one of
    ``channels`` (those with synced templates): a start would fail for every contact."""
    opening = opening_template(flow)
    if opening is None:
        return None
    for node, why in flow_template_problems(flow, channels):
        if node.id == opening["node"]:
            code = REFUSAL_CODES.get(why.code, "template_params_mismatch")
            details = {**opening, "channel": why.channel, "problem": why.code}
            return code, f"{flow.id}: {node.id}: {why.message}", details
    return None


def public(record: dict[str, str]) -> dict[str, Any]:
    """A start as the API shows it: request, status, counts, message outcomes."""
    num = {
        k: int(v) for k, v in record.items() if k.startswith(("skipped", "msg_")) or k in _COUNTS
    }
    out: dict[str, Any] = {
        "uuid": record["uuid"],
        "flow": record["flow"],
        "status": record["status"],
        "params": json.loads(record.get("params") or "{}"),
        "groups": json.loads(record.get("groups") or "[]"),
        "restart_participants": record.get("restart_participants") == "1",
        "exclude_active": record.get("exclude_active") == "1",
        "created_on": float(record["created_on"]),
    }
    for key in ("started_on", "completed_on", "cancelled_on", "send_at", "spread_over"):
        if record.get(key):
            out[key] = float(record[key])
    for key in ("reason", "retry_of", "by"):
        if record.get(key):
            out[key] = record[key]
    out["kind"] = record.get("kind") or "start"
    if out["kind"] == "trigger":  # a flow's triggered runs of one UTC day (docs/triggers.md)
        out["day"] = record.get("day")
        out["runs"] = int(record.get("runs") or 0)
    if record.get("retry"):  # a retry: how many it retried, and skipped and why
        out["retry"] = json.loads(record["retry"])
    out["counts"] = {
        "targeted": num.get("targeted", 0),
        "started": num.get("started", 0),
        "skipped": num.get("skipped", 0),
        "skipped_by_reason": {r: num.get(f"skipped:{r}", 0) for r in SKIP_REASONS},
        "failed": num.get("failed", 0),
    }
    # started contacts whose first message has no outcome yet (sent or failed)
    out["sending"] = max(0, num.get("accepted", 0) - num.get("opened", 0))
    out["messages"] = {
        "sent": num.get("msg_sent", 0),
        "delivered": num.get("msg_delivered", 0),
        "read": num.get("msg_read", 0),
        "failed": num.get("msg_failed", 0),
        "failed_by_code": {
            k.removeprefix("msg_failed:"): v for k, v in num.items() if k.startswith("msg_failed:")
        },
    }
    return out


_COUNTS = ("targeted", "started", "skipped", "failed", "accepted", "opened")


async def failed_contacts(store: Store, sid: str) -> AsyncIterator[list[str]]:
    """The contacts of a start that failed, a batch at a time."""
    cursor = 0
    while True:
        page, cursor = await store.start_outcomes(sid, "failed", cursor, 1000)
        if page:
            yield [p["contact"] for p in page]
        if cursor == 0:
            return


async def standing_failures(
    store: Store, record: dict[str, str]
) -> tuple[list[str], dict[str, int]]:
    """The failed contacts of a start whose failure still stands, and those left out, by
    reason: ``started_since``, the contact has a run of the flow begun after this start was
    made, by something else (another start, a retry, a trigger), that did not fail."""
    sid, flow, since = record["uuid"], record["flow"], float(record["created_on"])
    standing: list[str] = []
    skipped: dict[str, int] = {}
    async for batch in failed_contacts(store, sid):
        for n in range(0, len(batch), 100):
            cids = batch[n : n + 100]
            runs = await asyncio.gather(*(_runs(store, cid) for cid in cids))
            for cid, theirs in zip(cids, runs, strict=True):
                if any(_made_good(r, flow, sid, since) for r in theirs):
                    skipped["started_since"] = skipped.get("started_since", 0) + 1
                else:
                    standing.append(cid)
    return standing, skipped


async def _runs(store: Store, cid: str) -> list[dict[str, Any]]:
    """The contact's runs: those active in its session, then its ended ones."""
    raw = await store.session_raw(cid)
    frames = json.loads(raw).get("frames", []) if raw else []
    return [f["run"] for f in frames] + await store.ended_runs(cid)


def _made_good(run: dict[str, Any], flow: str, sid: str, since: float) -> bool:
    return bool(
        run.get("flow") == flow
        and run.get("start") != sid
        and float(run.get("created_on") or 0) >= since
        and run.get("status") != FAILED
    )


class Starter:
    """Expands starts, a chunk at a time; the worker runs :meth:`loop` in every process."""

    def __init__(
        self,
        store: Store,
        engine: Any,  # a callable returning the current Engine (flows may be reloaded)
        clock: Clock,
        settings: StartSettings | None = None,
    ) -> None:
        self.store = store
        self.engine = engine
        self.clock = clock
        self.settings = settings or StartSettings()
        self.token = uuid.uuid4().hex.encode()  # this process's mark on the starts it expands

    async def schedule(self, sid: str, due: float | None) -> None:
        """Queue the start's next chunk now, or at ``due``."""
        if due is not None and due > self.clock.now():
            await self.store.start_due(sid, due)
        else:
            await self.store.queue_start(sid)

    async def move_due(self) -> int:
        """Queue the chunks whose time has come (scheduled starts, spread starts)."""
        return await self.store.move_due_starts(self.clock.now())

    async def read(self, consumer: str, block_ms: int | None) -> list[tuple[bytes, str]]:
        return await self.store.read_startq(consumer, block_ms)

    async def reclaim(self, consumer: str) -> list[tuple[bytes, str]]:
        return await self.store.reclaim_startq(consumer, self.settings.reclaim_idle_ms)

    async def handle(self, eid: bytes, sid: str) -> str:
        """One entry: wait for the fast lane, expand a chunk, queue the next, acknowledge.

        If Redis goes away meanwhile, the same chunk is tried again once it is back (a chunk is
        safe to replay: each contact is decided once per start); after ``outage_wait`` the
        entry is left to the reclaim, as after a crash."""
        while True:
            result = await once_reachable(
                f"start {sid}", lambda: self.step(sid), self.settings.outage_wait
            )
            if result != "throttled":
                break
            await asyncio.sleep(0.05)
        if result == "busy":  # another process is on it: look again shortly
            await self.store.start_due(sid, self.clock.now() + 1)
        elif result == "more":
            record = await self.store.start_record(sid)
            await self.schedule(sid, self._next_due(record) if record else None)
        await self.store.ack_start(eid)
        return result

    def _next_due(self, record: dict[str, str]) -> float | None:
        interval = float(record.get("interval") or 0)
        if not interval:
            return None
        return float(record["began"]) + int(record.get("chunks") or 0) * interval

    async def step(self, sid: str) -> str:
        """Expand one chunk of the start: 'throttled' (the ready stream is full: nothing
        done), 'busy' (another process holds it), 'more', or 'done'."""
        if await self.store.ready_backlog() > self.settings.ready_threshold:
            return "throttled"
        if not await self.store.lock_start(sid, self.token, self.settings.lock_ms):
            return "busy"
        try:
            return await self._chunk(sid)
        finally:
            await self.store.unlock_start(sid, self.token)

    async def _finish(self, sid: str, status: str, reason: str = "") -> None:
        fields: dict[str, Any] = {"status": status, "completed_on": self.clock.now()}
        if reason:
            fields["reason"] = reason
        await self.store.end_start(sid, fields)

    async def _chunk(self, sid: str) -> str:
        record = await self.store.start_record(sid)
        if record is None or record["status"] in FINISHED:
            return "done"
        engine: Engine = self.engine()
        flow_id = record["flow"]
        if flow_id not in engine.flows:
            await self._finish(sid, FAILED, f"flow {flow_id!r} is no longer loaded")
            return "done"
        sources: list[str] = json.loads(record["sources"])
        now = self.clock.now()
        if record["status"] == PENDING:
            record.update(await self._begin(sid, sources, record, now))
        phase, cursor = int(record.get("phase") or 0), int(record.get("cursor") or 0)
        chunk = int(record.get("chunk") or self.settings.chunk)
        cids: list[str] = []
        server = record.get("scan_server", "")
        while phase < len(sources) and not cids:  # skip empty sources in one step
            server, after, cids = await self.store.scan_source(
                sources[phase], cursor, chunk, server
            )
            if len(cids) > chunk:
                # a small set answers whole whatever the COUNT: take a chunk of those not yet
                # decided, and scan the same cursor again next time until none is left
                cids = await self.store.undecided(sid, cids)
                if len(cids) > chunk:
                    cids = cids[:chunk]
                    break
            cursor = after
            if cursor == 0:
                phase, cursor = phase + 1, 0
        restart = record.get("restart_participants") == "1"
        exclude = record.get("exclude_active") == "1"
        facts = await self.store.contact_facts(cids, not restart) if cids else []
        params = json.loads(record.get("params") or "{}")
        if cids:
            decisions = []
            for cid, (contact, session, flows_run) in zip(cids, facts, strict=True):
                outcome, reason = decide(
                    engine, flow_id, contact, session, flows_run, restart, exclude
                )
                event = Start(flow=flow_id, params=params, start=sid, at=now).encode()
                decisions.append((cid, outcome, reason, event))
            if not await self.store.decide_contacts(sid, decisions):
                return "done"  # cancelled meanwhile: nothing after it was queued
        await self.store.start_progress(sid, phase, cursor, server)
        if phase >= len(sources):
            await self._finish(sid, COMPLETED)
            return "done"
        return "more"

    async def _begin(
        self, sid: str, sources: list[str], record: dict[str, str], now: float
    ) -> dict[str, Any]:
        """pending -> starting; for a spread start, the chunk size and the pause between."""
        fields: dict[str, Any] = {"status": STARTING, "started_on": now, "began": now}
        spread = float(record.get("spread_over") or 0)
        if spread > 0:
            total = await self.store.source_sizes(sources)
            if total:
                # about one chunk a second, never bigger than the usual chunk
                chunk = max(1, min(self.settings.chunk, math.ceil(total / spread)))
                fields["chunk"] = chunk
                fields["interval"] = spread * chunk / total
        await self.store.update_start(sid, fields)
        return fields

    async def loop(self, consumer: str, again: bool = False) -> None:
        """One pass of the work loop: due chunks, crashed entries, then new ones. ``again``: the
        last pass failed (Redis went away), so first the entries it read and did not finish."""
        await self.move_due()
        entries = await self.store.read_own_startq(consumer) if again else []
        entries = entries or await self.reclaim(consumer) or await self.read(consumer, 200)
        for eid, sid in entries:
            await self.handle(eid, sid)

    async def drop_consumer(self, consumer: str) -> None:
        await self.store.drop_starter(consumer)
