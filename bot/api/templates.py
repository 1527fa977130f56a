"""Message templates: every channel's synced templates, filtered and paged; a sync from the
providers. The service functions (:func:`find`, :func:`sync`) serve these handlers and Studio."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bot.api import models as m
from bot.api.context import runtime, store
from bot.api.routes import Op, query
from bot.store import Store
from bot.store.paging import decode_cursor, encode_cursor
from bot.work.runtime import Runtime
from channels.protocol import Channel, TemplatePreview

TEMPLATE_MEMBER = re.compile(r"^[^\x00]*\x00[^\x00]*\x00[^\x00]*$")


PLACEHOLDER = re.compile(r"(\{\{\s*[A-Za-z0-9_]+\s*\}\})")
APPROVED = "APPROVED"  # a template in any other status shows why, where the provider said


@dataclass(frozen=True)
class Shown:
    """A synced template for a person to read: the item as synced (with its ``channel``), what
    it says as its channel type lays it out (placeholders in place), and why it is not approved
    when the provider said."""

    item: dict[str, Any]
    preview: TemplatePreview | None  # None: the channel type cannot lay it out
    reason: str | None

    @property
    def placeholders(self) -> list[str]:
        p = self.preview
        texts = [p.header or "", p.body, *(b.target or "" for b in p.buttons)] if p else []
        found: list[str] = []
        for placeholder in PLACEHOLDER.findall(" ".join(texts)):
            if placeholder not in found:
                found.append(placeholder)
        return found


def describe(channel_type: type[Channel], item: dict[str, Any]) -> Shown:
    reason = item.get("rejected_reason")
    if str(item.get("status", "")).upper() == APPROVED or reason in (None, "", "NONE"):
        reason = None
    return Shown(item, channel_type.show_template(item), str(reason) if reason else None)


def segments(text: str) -> list[tuple[str, bool]]:
    """``text`` cut into (piece, is a placeholder such as ``{{1}}`` or ``{{name}}``)."""
    return [(piece, i % 2 == 1) for i, piece in enumerate(PLACEHOLDER.split(text)) if piece]


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
