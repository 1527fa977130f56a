"""Flows: the loaded flows, a reload from the folder, and one flow's stats (read from the
counters each commit keeps in step -- bot/engine/stats.py -- so no contact is walked)."""

from __future__ import annotations

from dataclasses import asdict

from aiohttp import web

from bot.api import models as m
from bot.api.context import runtime, store
from bot.api.routes import Op
from bot.core.errors import ApiError
from bot.engine import stats as flowstats
from bot.work.flowcheck import flow_template_problems, synced_channels


async def list_flows(request: web.Request) -> web.Response:
    flows = runtime(request).registry.flows
    return web.json_response(
        {
            "flows": [
                {
                    "id": f.id,
                    "name": f.name,
                    "language": f.language,
                    "version": f.version,
                    "nodes": len(f.nodes),
                    "expire_after": f.expire_after,
                }
                for f in flows.values()
            ]
        }
    )


async def reload_flows(request: web.Request) -> web.Response:
    """Reload; also the loaded flows' templates that the synced templates refuse."""
    report = runtime(request).load_flows()
    rt = runtime(request)
    checked = await synced_channels(store(request), rt.channels.values())
    templates = [
        {"flow": flow.id, "node": node.id, **asdict(why)}
        for flow in rt.registry.flows.values()
        for node, why in flow_template_problems(flow, checked)
    ]
    return web.json_response(
        {
            "loaded": report.loaded,
            "unchanged": report.unchanged,
            "kept": report.kept,
            "removed": report.removed,
            "problems": [str(p) for p in report.problems],
            "template_problems": templates,
        }
    )


async def flow_stats(request: web.Request) -> web.Response:
    """Contacts waiting at each node now, counts through each exit, results by category, and
    run totals; also for a flow whose file is gone (from its counters alone)."""
    flow_id = request.match_info["id"]
    flow = runtime(request).registry.flows.get(flow_id)
    counters, open_runs = await store(request).flow_counters(flow_id)
    if flow is None and not counters:
        raise ApiError(404, "unknown_flow", f"no flow {flow_id!r}")
    return web.json_response(flowstats.present(flow_id, flow, counters, open_runs))


OPS = [
    Op("GET", "/api/v1/flows", list_flows, "The loaded flows", m.FlowList),
    Op(
        "POST",
        "/api/v1/flows/reload",
        reload_flows,
        "Reload the flows folder (an invalid file keeps its previous version live)",
        m.ReloadReport,
    ),
    Op(
        "GET",
        "/api/v1/flows/{id}/stats",
        flow_stats,
        "A flow's stats: waiting per node, counts per exit, results, run totals",
        m.FlowStats,
        errors=("unknown_flow",),
    ),
]
