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

TEMPLATE_MEMBER = re.compile(r"^[^\x00]*\x00[^\x00]*\x00[^\x00]*$")


PLACEHOLDER = re.compile(r"(\{\{\s*[A-Za-z0-9_]+\s*\}\})")
SHOWN_STATUS = "APPROVED"  # a template in any other status shows why, where the provider said


@dataclass(frozen=True)
class Button:
    type: str  # QUICK_REPLY, URL, PHONE_NUMBER, COPY_CODE, ...
    text: str
    target: str | None = None  # a URL button's URL, a call button's number


@dataclass(frozen=True)
class Parts:
    """A synced template as a person reads it: what its components say."""

    header: str | None  # a text header's text; a media header's format in brackets
    body: str
    footer: str | None
    buttons: list[Button]
    reason: str | None  # why it is not approved, as the provider said

    @property
    def placeholders(self) -> list[str]:
        texts = [self.header or "", self.body, *(b.target or "" for b in self.buttons)]
        found: list[str] = []
        for placeholder in PLACEHOLDER.findall(" ".join(texts)):
            if placeholder not in found:
                found.append(placeholder)
        return found


def segments(text: str) -> list[tuple[str, bool]]:
    """``text`` cut into (piece, is a placeholder such as ``{{1}}`` or ``{{name}}``)."""
    return [(piece, i % 2 == 1) for i, piece in enumerate(PLACEHOLDER.split(text)) if piece]


def parts(item: dict[str, Any]) -> Parts:
    """The header, body, footer and buttons of a provider's template item."""
    found: dict[str, dict[str, Any]] = {}
    for component in item.get("components") or []:
        if isinstance(component, dict):
            found.setdefault(str(component.get("type", "")).upper(), component)
    header = found.get("HEADER")
    header_text = None
    if header is not None:
        fmt = str(header.get("format") or "TEXT").upper()
        header_text = str(header.get("text") or "") if fmt == "TEXT" else f"[{fmt.lower()}]"
    buttons = [
        Button(
            str(b.get("type", "")).upper(),
            str(b.get("text") or ""),
            str(b.get("url") or b.get("phone_number") or "") or None,
        )
        for b in (found.get("BUTTONS") or {}).get("buttons") or []
        if isinstance(b, dict)
    ]
    reason = item.get("rejected_reason")
    if str(item.get("status", "")).upper() == SHOWN_STATUS or reason in (None, "", "NONE"):
        reason = None
    footer = found.get("FOOTER")
    return Parts(
        header=header_text,
        body=str((found.get("BODY") or {}).get("text") or ""),
        footer=str(footer.get("text") or "") if footer else None,
        buttons=buttons,
        reason=str(reason) if reason is not None else None,
    )


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
