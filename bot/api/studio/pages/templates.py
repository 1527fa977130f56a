"""Templates: the synced message templates (status, language, category, the body with its
placeholders marked, buttons, the provider's reason when not approved), a Sync button, and a
template's page with every language it has and the flows that send it.

Read and synced through :mod:`bot.api.templates` (the JSON API's services); each item is laid
out by its channel type (``Channel.show_template``), the way ``chasqui templates show`` does.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import ValidationError

from bot.api import flows as flow_service
from bot.api import models as m
from bot.api import templates as service
from bot.api.context import runtime, store
from bot.api.routes import invalid
from bot.api.studio.i18n import translator
from bot.api.studio.render import lang, page, redirect
from bot.core.errors import ApiError
from bot.store.paging import MAX_PAGE
from bot.work.runtime import Runtime

routes = web.RouteTableDef()

STATUSES = ("APPROVED", "PENDING", "REJECTED", "PAUSED", "DISABLED")
FILTERS = ("channel", "status", "language", "name", "cursor")


def _shown(rt: Runtime, page: m.TemplatePage) -> list[service.Shown]:
    shown = []
    for template in page.templates:
        item = template.model_dump()
        channel = rt.channels.get(item["channel"])
        if channel is not None:
            shown.append(service.describe(type(channel), item))
        else:  # its channel is no longer configured
            shown.append(service.Shown(item, None, None))
    return shown


@routes.get("/templates")
async def templates(request: web.Request) -> web.StreamResponse:
    rt = runtime(request)
    asked = {k: v for k, v in request.query.items() if k in FILTERS and v.strip()}
    try:
        q = m.TemplateQuery.model_validate(asked)
    except ValidationError as exc:
        raise invalid("bad_request", exc) from None
    found = await service.find(rt, store(request), q)
    channels = sorted(n for n, c in rt.channels.items() if c.capabilities.templates)
    later = {k: v for k, v in asked.items() if k != "cursor"}
    return await page(
        request,
        "templates/index.html",
        shown=_shown(rt, found),
        next=found.next,
        asked=later,
        channels=channels,
        statuses=STATUSES,
        segments=service.segments,
    )


@routes.get("/templates/{name}")
async def template(request: web.Request) -> web.StreamResponse:
    rt, name = runtime(request), request.match_info["name"]
    found = await service.find(rt, store(request), m.TemplateQuery(name=name, limit=MAX_PAGE))
    if not found.templates:
        _ = translator(lang(request))
        raise ApiError(404, "unknown_template", _("No synced template is named {name}.", name=name))
    used: dict[str, list[str]] = {}
    for flow, node in flow_service.template_nodes(rt.registry.flows, name):
        used.setdefault(flow.id, []).append(node.id)
    return await page(
        request,
        "templates/show.html",
        name=name,
        shown=_shown(rt, found),
        used=used,
        segments=service.segments,
    )


@routes.post("/templates/sync")
async def sync(request: web.Request) -> web.StreamResponse:
    result = await service.sync(runtime(request))
    _ = translator(lang(request))
    said: list[str] = []
    failed: list[str] = []
    for channel, outcome in sorted(result.synced.items()):
        if "error" in outcome:
            failed.append(f"{channel}: {outcome['error']}")
        else:
            n = outcome["templates"]
            said.append(_("{channel}: {n} templates synced", channel=channel, n=n))
    if failed:
        raise await redirect(request, "/studio/templates", error="; ".join(failed + said))
    notice = "; ".join(said) or _("No channel here has templates to sync.")
    raise await redirect(request, "/studio/templates", notice=notice)
