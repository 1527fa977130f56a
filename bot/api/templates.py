"""Message templates: every channel's synced templates, filtered and paged; a sync from the
providers. The service functions (:func:`find`, :func:`sync`) serve these handlers and Studio."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from bot.api import models as m
from bot.api.context import runtime, store
from bot.api.routes import Op, query
from bot.store import Store
from bot.store.paging import decode_cursor, encode_cursor
from bot.work.runtime import Runtime

TEMPLATE_MEMBER = re.compile(r"^[^\x00]*\x00[^\x00]*\x00[^\x00]*$")


def _key(template: dict[str, Any]) -> str:
    return "\x00".join(str(template.get(k) or "") for k in ("channel", "name", "language"))


async def find(rt: Runtime, store: Store, q: m.TemplateQuery) -> m.TemplatePage:
    """Synced templates of every channel, filtered by channel, status, language and name,
    in (channel, name, language) order, paged like every list."""
    found: list[dict[str, Any]] = []
    after = decode_cursor(q.cursor, TEMPLATE_MEMBER) if q.cursor else None
    for name in rt.channels:
        if q.channel and q.channel != name:
            continue
        for t in await store.templates(name):
            if q.status and t.get("status") != q.status.upper():
                continue
            if q.language and t.get("language") != q.language:
                continue
            if q.name and t.get("name") != q.name:
                continue
            item = {"channel": name, **t}
            if after is None or _key(item) > after:
                found.append(item)
    found.sort(key=_key)
    page = found[: q.limit]
    more = len(found) > q.limit
    return m.TemplatePage(
        templates=[m.Template.model_construct(**t) for t in page],  # the items as stored
        next=encode_cursor(_key(page[-1])) if more else None,
    )


async def sync(rt: Runtime) -> m.Synced:
    """Sync every channel's templates from its provider; one channel's failure is reported and
    the others still sync."""
    synced: dict[str, Any] = {}
    for name, channel in rt.channels.items():
        try:
            count = await channel.sync_templates()
        except Exception as exc:
            synced[name] = {"error": str(exc)}
            continue
        if count is not None:
            synced[name] = {"templates": count}
    return m.Synced(synced=synced)


async def list_templates(request: web.Request) -> web.Response:
    page = await find(runtime(request), store(request), query(request, m.TemplateQuery))
    return web.json_response(page.model_dump(mode="json"))


async def sync_templates(request: web.Request) -> web.Response:
    return web.json_response((await sync(runtime(request))).model_dump(mode="json"))


OPS = [
    Op(
        "GET",
        "/api/v1/templates",
        list_templates,
        "Synced templates",
        m.TemplatePage,
        query=m.TemplateQuery,
        errors=("bad_request",),
    ),
    Op(
        "POST",
        "/api/v1/templates/sync",
        sync_templates,
        "Sync every channel's templates from its provider",
        m.Synced,
    ),
]
