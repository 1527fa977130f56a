"""Flows: every flow file with its validity and problems (as ``chasqui check`` says them), a
Reload button, and a flow's page: the flow drawn on the server from its file, with live counts.

Everything here is read through the services of :mod:`bot.api.flows` (the JSON API's), so the
page and ``POST /api/v1/flows/reload`` / ``GET /api/v1/flows/<id>/stats`` cannot disagree.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from markupsafe import Markup

from bot.api import flows as service
from bot.api.context import runtime, store
from bot.api.studio.diagram import Counts, TemplateMark, draw
from bot.api.studio.i18n import translator
from bot.api.studio.render import fragment, lang, page, redirect
from bot.flow.files import Problem

routes = web.RouteTableDef()

TEMPLATE_FIELD = "send_message.template"  # the field of the template problems check reports


def _split(problems: list[Problem]) -> tuple[list[Problem], list[Problem]]:
    """(the file's problems, its templates' problems)."""
    return (
        [p for p in problems if p.field != TEMPLATE_FIELD],
        [p for p in problems if p.field == TEMPLATE_FIELD],
    )


@routes.get("/flows")
async def flows(request: web.Request) -> web.StreamResponse:
    rt, data = runtime(request), store(request)
    rows: list[dict[str, Any]] = []
    for checked in await service.check(rt, data):
        problems, templates = _split(checked.problems)
        _, open_runs = await data.flow_counters(checked.id)
        rows.append(
            {
                "file": checked,
                "flow": checked.live,
                "problems": problems,
                "templates": templates,
                "active": open_runs,
            }
        )
    return await page(request, "flows/index.html", rows=rows, folder=rt.registry.folder)


@routes.post("/flows/reload")
async def reload(request: web.Request) -> web.StreamResponse:
    report = await service.reload(runtime(request), store(request))
    _ = translator(lang(request))
    done = _(
        "Reloaded: {loaded} loaded, {unchanged} unchanged, {removed} removed.",
        loaded=len(report.loaded),
        unchanged=len(report.unchanged),
        removed=len(report.removed),
    )
    troubles = len(report.problems) + len(report.template_problems)
    if troubles:
        error = done + " " + _("{n} problem(s): see the flows below.", n=troubles)
        raise await redirect(request, "/studio/flows", error=error)
    raise await redirect(request, "/studio/flows", notice=done)


async def _live(request: web.Request, flow_id: str) -> dict[str, Any]:
    """What the live part of a flow's page shows: the diagram and the counts, now."""
    rt, data = runtime(request), store(request)
    stats = (await service.stats(rt, data, flow_id)).model_dump(mode="json")
    flow = rt.registry.flows.get(flow_id)
    diagram = None
    if flow is not None:
        marks = {
            node: TemplateMark(t.name, t.language, t.status, "; ".join(t.problems) or None)
            for node, t in (await service.node_templates(rt, data, flow)).items()
        }
        svg = draw(flow, Counts.from_stats(stats), marks, translator(lang(request)))
        diagram = Markup(svg)  # draw() escapes every text it puts in
    return {"flow_id": flow_id, "flow": flow, "stats": stats, "diagram": diagram}


@routes.get("/flows/{id}")
async def flow(request: web.Request) -> web.StreamResponse:
    flow_id = request.match_info["id"]
    live = await _live(request, flow_id)  # an unknown flow: the 404 page
    rt = runtime(request)
    checked = next((f for f in await service.check(rt, store(request)) if f.id == flow_id), None)
    problems, templates = _split(checked.problems if checked else [])
    return await page(
        request,
        "flows/show.html",
        file=checked,
        problems=problems,
        template_problems=templates,
        templates=await service.node_templates(rt, store(request), live["flow"])
        if live["flow"]
        else {},
        **live,
    )


@routes.get("/flows/{id}/live")
async def flow_live(request: web.Request) -> web.StreamResponse:
    return fragment(request, "flows/_live.html", **await _live(request, request.match_info["id"]))
