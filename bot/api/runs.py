"""Runs: across contacts (``GET /api/v1/runs``, read from every flow's run index by state,
which each commit keeps in step, so no contact is walked) and one contact's runs, messages
and history. ``find_runs``, ``runs_of`` and ``history`` are the services Studio's pages and the
CLI call too."""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bot.api import models as m
from bot.api.context import runtime, store
from bot.api.lookup import contact_or_404
from bot.api.routes import Op, query
from bot.core.errors import ApiError
from bot.core.runstatus import ENDED, LIVE
from bot.engine.sprint import Session
from bot.store import Store
from bot.store.paging import decode_cursor, filtered_page

RUN_MEMBER = re.compile(r"^\d{13}\.\d{3}\|[0-9a-f-]{36}\|[0-9a-f-]{36}$")


@dataclass
class RunsFound:
    """A page of runs and the cursor of the next page (None on the last)."""

    runs: list[dict[str, Any]]
    next: str | None


# -- the services: pages, the JSON API and the CLI call these -----------------------------------
async def find_runs(st: Store, known: Collection[str], q: m.RunQuery) -> RunsFound:
    """Runs newest first, of one ``flow`` or all, of one ``status`` or all, with a ``next``
    cursor. ``active`` and ``waiting`` are read from the contacts' sessions (live state).
    ``known``: the flows loaded now (a flow with no run yet is not unknown)."""
    status = q.status
    if q.flow is not None:
        if q.flow not in known and q.flow not in (await st.indexed_flows()):
            raise ApiError(404, "unknown_flow", f"no flow {q.flow!r}")
        flows = [q.flow]
    else:
        flows = await st.indexed_flows()
    open_runs = status is None or status in LIVE
    ended = [] if status in LIVE else [status] if status else list(ENDED)
    before = decode_cursor(q.cursor, RUN_MEMBER) if q.cursor else None
    opened: dict[str, bool] = {}  # member -> the run is open (read from the session)

    async def fetch(last: str | None, count: int) -> list[str]:
        entries = await st.run_index_page(flows, open_runs, ended, last, count)
        opened.update(entries)
        return [member for member, _ in entries]

    async def load(members: Sequence[str]) -> list[dict[str, Any] | None]:
        runs = await st.runs_at([(m, opened[m]) for m in members])
        return [
            None if run is None or (status in LIVE and run.get("status") != status) else run
            for run in runs
        ]

    page = await filtered_page(fetch, load, before, q.limit)
    return RunsFound(page["items"], page["next"])


async def runs_of(st: Store, cid: str, active_first: bool = True) -> list[dict[str, Any]]:
    """A contact's runs: those in its session (the active one first, or outermost first),
    then the ended ones, newest first."""
    session = Session.from_json(await st.session_raw(cid))
    frames = reversed(session.frames) if active_first else session.frames
    return [frame["run"] for frame in frames] + await st.ended_runs(cid)


async def history(st: Store, cid: str) -> list[dict[str, Any]]:
    """One timeline of a contact: messages in and out (with status and error) and its runs'
    events (started, and how each ended: completed, interrupted, expired, failed), oldest
    first. Derived from the records kept anyway, so it costs nothing to keep in step."""
    runs = await runs_of(st, cid, False)
    # (at, order, item): at one instant an older run ends first (the start that interrupts it
    # comes after), then runs start, then messages; a run begun in that instant ends last
    timeline: list[tuple[float, int, dict[str, Any]]] = []
    for run in runs:
        base = {"run": run["uuid"], "flow": run["flow"]}
        started = float(run["created_on"])
        timeline.append((started, 0, {"type": "run_started", "at": started, **base}))
        if run.get("exited_on") is not None:
            ended = float(run["exited_on"])
            errors = run.get("errors") or []
            reason = errors[-1].get("message") if errors else None
            item = {"type": f"run_{run['status']}", "at": ended, **base}
            if reason:
                item["reason"] = reason
            timeline.append((ended, 2 if ended == started else -1, item))
    for message in await st.messages(cid):
        at = float(message.get("created_on") or 0)
        kind = "message_in" if message.get("direction") == "in" else "message_out"
        timeline.append((at, 1, {"type": kind, "at": at, "message": message}))
        if message.get("action") in ("opt_out", "opt_in"):
            kind = "opted_out" if message["action"] == "opt_out" else "opted_in"
            timeline.append((at, 1, {"type": kind, "at": at}))
    timeline.sort(key=lambda entry: (entry[0], entry[1]))
    return [item for _, _, item in timeline]


# -- the JSON API --------------------------------------------------------------------------------
async def list_runs(request: web.Request) -> web.Response:
    q = query(request, m.RunQuery)
    found = await find_runs(store(request), runtime(request).registry.flows, q)
    return web.json_response({"runs": found.runs, "next": found.next})


async def contact_runs(request: web.Request) -> web.Response:
    contact = await contact_or_404(store(request), request.match_info["uuid"])
    return web.json_response({"runs": await runs_of(store(request), contact["uuid"])})


async def contact_messages(request: web.Request) -> web.Response:
    contact = await contact_or_404(store(request), request.match_info["uuid"])
    return web.json_response({"messages": await store(request).messages(contact["uuid"])})


async def contact_history(request: web.Request) -> web.Response:
    contact = await contact_or_404(store(request), request.match_info["uuid"])
    items = await history(store(request), contact["uuid"])
    return web.json_response({"contact": contact["uuid"], "history": items})


OPS = [
    Op(
        "GET",
        "/api/v1/runs",
        list_runs,
        "Runs across contacts, newest first",
        m.RunPage,
        query=m.RunQuery,
        errors=("unknown_flow", "bad_request"),
    ),
    Op(
        "GET",
        "/api/v1/contacts/{uuid}/runs",
        contact_runs,
        "A contact's runs: the active ones first, then the ended, newest first",
        m.RunList,
        errors=("unknown_contact",),
    ),
    Op(
        "GET",
        "/api/v1/contacts/{uuid}/messages",
        contact_messages,
        "A contact's latest messages, in and out",
        m.MessageList,
        errors=("unknown_contact",),
    ),
    Op(
        "GET",
        "/api/v1/contacts/{uuid}/history",
        contact_history,
        "A contact's timeline: messages and run events, oldest first",
        m.History,
        errors=("unknown_contact",),
    ),
]
