"""Runs across contacts (``GET /api/v1/runs``) and a flow's stats (``GET /api/v1/flows/<id>/
stats``). Both read what each commit keeps in step -- every flow's run index by state and its
counters (bot/store/work.py, bot/engine/stats.py) -- so neither walks the contacts."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from bot.api.contacts import _runtime, _store
from bot.core.errors import ApiError
from bot.core.runstatus import ENDED, LIVE, RunStatus
from bot.engine import stats as flowstats
from bot.store.keys import OPEN, flow_runs_key
from bot.store.paging import decode_cursor, filtered_page, page_limit

STATUSES = tuple(RunStatus)
RUN_MEMBER = re.compile(r"^\d{13}\.\d{3}\|[0-9a-f-]{36}\|[0-9a-f-]{36}$")


async def _known_flow(request: web.Request, flow: str) -> bool:
    return flow in _runtime(request).registry.flows or flow in await _store(request).indexed_flows()


async def list_runs(request: web.Request) -> web.Response:
    """Runs newest first, of one ``flow`` or all, of one ``status`` or all, with a ``next``
    cursor. ``active`` and ``waiting`` are read from the contacts' sessions (live state)."""
    q = request.query
    store = _store(request)
    limit = page_limit(q)
    status = q.get("status")
    if status is not None and status not in STATUSES:
        raise ApiError(400, "bad_request", f"status must be one of {', '.join(STATUSES)}")
    if "flow" in q:
        if not await _known_flow(request, q["flow"]):
            raise ApiError(404, "unknown_flow", f"no flow {q['flow']!r}")
        flows = [q["flow"]]
    else:
        flows = await store.indexed_flows()
    states = [OPEN] if status in LIVE else [status] if status else [OPEN, *ENDED]
    keys = [flow_runs_key(flow, state) for flow in flows for state in states]
    before = decode_cursor(q["cursor"], RUN_MEMBER) if q.get("cursor") else None
    opened: dict[str, bool] = {}  # member -> the run is open (read from the session)

    async def fetch(last: str | None, count: int) -> list[str]:
        entries = await store.run_index_page(keys, last, count) if keys else []
        opened.update(entries)
        return [member for member, _ in entries]

    async def load(members: Sequence[str]) -> list[dict[str, Any] | None]:
        runs = await store.runs_at([(m, opened[m]) for m in members])
        return [
            None if run is None or (status in LIVE and run.get("status") != status) else run
            for run in runs
        ]

    page = await filtered_page(fetch, load, before, limit)
    return web.json_response({"runs": page["items"], "next": page["next"]})


async def flow_stats(request: web.Request) -> web.Response:
    """Contacts waiting at each node now, counts through each exit, results by category, and
    run totals; also for a flow whose file is gone (from its counters alone)."""
    flow_id = request.match_info["id"]
    flow = _runtime(request).registry.flows.get(flow_id)
    counters, open_runs = await _store(request).flow_counters(flow_id)
    if flow is None and not counters:
        raise ApiError(404, "unknown_flow", f"no flow {flow_id!r}")
    return web.json_response(flowstats.present(flow_id, flow, counters, open_runs))


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/runs", list_runs)
    app.router.add_get("/api/v1/flows/{id}/stats", flow_stats)
