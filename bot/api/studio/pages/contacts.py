"""Contacts: the list (search as you type, filters, paging, create, CSV import with its per-row
report, CSV export) and a contact's page (the conversation as a chat timeline with ticks and
failures, the 24-hour window, runs, groups, fields, edit, opt out/in, delete, Start in flow).

Every action calls the service the JSON API calls (:mod:`bot.api.contacts`,
:mod:`bot.api.groups`, :mod:`bot.api.runs`, the starts' service) with the same typed models;
this module only reads forms into those models and lays out what they answer.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import ValidationError

from bot.api import contacts as service
from bot.api import groups as groups_service
from bot.api import models as m
from bot.api import start_service
from bot.api.context import now, runtime, store
from bot.api.lookup import contact_or_404, group_or_404
from bot.api.routes import invalid
from bot.api.runs import history, runs_of
from bot.api.studio.i18n import translator
from bot.api.studio.pages.send import REASON_WORDS
from bot.api.studio.render import Form, form, fragment, lang, page, redirect
from bot.api.studio.render import field as form_field
from bot.core.errors import ApiError
from bot.work.contacts_import import READ_CHUNK

routes = web.RouteTableDef()


def _(label: str) -> str:
    """Marks an English label for translation (locale/*/contacts.toml); translated where it
    is shown, in the template or by :func:`say`."""
    return label


STATUSES = ("active", "opted_out", "blocked", "in_flow")  # the list's status filter
PAGE = 50
# What a status (of a contact, a run, a message) is called on the pages. Short words like
# "failed" are translated differently elsewhere in Studio ("fallidos", counting starts), and
# one label has one translation: these are keyed by context, locale/en says them in English.
LABELS = {
    "active": _("status:active"),
    "opted_out": _("status:opted_out"),
    "blocked": _("status:blocked"),
    "in_flow": _("status:in_flow"),
    "waiting": _("status:waiting"),
    "completed": _("status:completed"),
    "interrupted": _("status:interrupted"),
    "expired": _("status:expired"),
    "failed": _("status:failed"),
    "queued": _("status:queued"),
    "sent": _("status:sent"),
    "delivered": _("status:delivered"),
    "read": _("status:read"),
}
EVENTS = {
    "run_started": _("{flow} started"),
    "run_completed": _("{flow} completed"),
    "run_interrupted": _("{flow} interrupted"),
    "run_expired": _("{flow} expired"),
    "run_failed": _("{flow} failed"),
    "opted_out": _("event:opted_out"),
    "opted_in": _("event:opted_in"),
}


def say(request: web.Request, label: str, **values: object) -> str:
    """``label`` in the request's language (a notice left for the next page)."""
    return translator(lang(request))(label, **values)


def when(at: Any) -> str:
    """A time as the server's local time, to the minute ('' when there is none)."""
    try:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(float(at)))
    except (TypeError, ValueError, OverflowError):
        return ""


def _model(model: type[m.Query] | type[m.Body], data: dict[str, Any], code: str) -> Any:
    """``data`` as ``model``, or the API's 400 naming the field (the page shows its message)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid(code, exc) from None


# -- the list ------------------------------------------------------------------------------------
@dataclass
class Filters:
    """What the list shows, as the query string says it (and as its links keep it)."""

    q: str = ""
    group: str = ""
    status: str = ""
    cursor: str = ""

    @classmethod
    def of(cls, request: web.Request) -> Filters:
        get = request.query.get
        status = get("status", "")
        return cls(
            q=get("q", "").strip(),
            group=get("group", "").strip(),
            status=status if status in STATUSES else "",
            cursor=get("cursor", ""),
        )

    def query(self, limit: int = PAGE) -> m.ContactQuery:
        data: dict[str, Any] = {"limit": limit}
        if self.q:
            data["q"] = self.q
        if self.group:
            data["group"] = self.group
        if self.status == "in_flow":
            data["in_flow"] = True
        elif self.status:
            data["status"] = self.status
        if self.cursor:
            data["cursor"] = self.cursor
        found: m.ContactQuery = _model(m.ContactQuery, data, "bad_request")
        return found

    def link(self, **change: str) -> str:
        """The query string of these filters with ``change`` (empty values left out)."""
        values = {"q": self.q, "group": self.group, "status": self.status, **change}
        return urlencode({k: v for k, v in values.items() if v})


async def _rows(request: web.Request, filters: Filters) -> dict[str, Any]:
    found = await service.find(store(request), filters.query())
    return {
        "contacts": found.contacts,
        "filters": filters,
        "next_link": filters.link(cursor=found.next) if found.next else "",
        "first_link": filters.link() if filters.cursor else "",
    }


@routes.get("/contacts")
async def contacts_page(request: web.Request) -> web.StreamResponse:
    filters = Filters.of(request)
    groups = await store(request).groups()
    return await page(
        request,
        "contacts/list.html",
        labels=LABELS,
        groups=groups,
        statuses=STATUSES,
        export_link=filters.link(),
        **await _rows(request, filters),
    )


@routes.get("/contacts/rows")
async def contacts_rows(request: web.Request) -> web.StreamResponse:
    """The table alone, for search as you type (``data-search``)."""
    rows = await _rows(request, Filters.of(request))
    return fragment(request, "contacts/rows.html", labels=LABELS, **rows)


@routes.get("/contacts/export.csv")
async def contacts_export(request: web.Request) -> web.StreamResponse:
    """The list as filtered, every page of it, as CSV: streamed a page of rows at a time."""
    query = Filters.of(request).query()
    st = store(request)
    if query.group is not None:
        await group_or_404(st, query.group)  # before the 200 goes out
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": 'attachment; filename="contacts.csv"',
            "Cache-Control": "no-store",
        }
    )
    await response.prepare(request)
    async for text in service.export_csv(st, query):
        await response.write(text.encode())
    await response.write_eof()
    return response


@routes.post("/contacts")
async def contacts_create(request: web.Request) -> web.StreamResponse:
    values = await form(request)
    data: dict[str, Any] = {"urn": form_field(values, "urn"), "name": form_field(values, "name")}
    group = form_field(values, "group")
    if group:
        data["groups"] = [group]
    spec = _model(m.ContactCreate, data, "invalid_body")
    contact = await service.create(store(request), now(request), spec)
    raise await redirect(
        request, f"/studio/contacts/{contact['uuid']}", notice=say(request, _("Contact created."))
    )


@routes.post("/contacts/import")
async def contacts_import(request: web.Request) -> web.StreamResponse:
    """The CSV of a multipart form, streamed into the import (never the whole file in memory,
    so the body limit does not apply); the form carries its CSRF token in the URL for that
    reason. Answers the report, row by row."""
    if not request.content_type.startswith("multipart/"):
        raise ApiError(400, "bad_request", say(request, _("Choose a CSV file to import.")))
    try:
        reader = await request.multipart()
        groups: list[str] = []
        part = await reader.next()
        while isinstance(part, BodyPartReader) and not part.filename:
            if part.name == "group":
                text = (await part.text()).strip()
                if text:
                    groups.append(text)
            part = await reader.next()
    except (HttpProcessingError, ValueError) as exc:
        raise ApiError(400, "bad_request", f"The form could not be read: {exc}") from None
    if not isinstance(part, BodyPartReader):
        raise ApiError(400, "bad_request", say(request, _("Choose a CSV file to import.")))
    file_part = part

    async def chunks() -> AsyncIterator[bytes]:
        while data := await file_part.read_chunk(READ_CHUNK):
            yield data

    report = await service.import_rows(store(request), now(request), groups, chunks())
    return await page(
        request,
        "contacts/import.html",
        report=report,
        filename=file_part.filename or "",
        groups=groups,
    )


# -- a contact's page ----------------------------------------------------------------------------
@dataclass
class Bubble:
    """One line of the chat timeline: a message in or out, or an event (a run began or ended,
    an opt-out)."""

    side: str  # "in", "out" or "event"
    at: str
    text: str = ""
    template: str = ""  # the template's name (the text is its words, as the contact read them)
    header: str = ""
    footer: str = ""
    buttons: list[str] = field(default_factory=list)
    status: str = ""  # queued, sent, delivered, read, failed
    error: str = ""  # why it failed, in words
    event: str = ""  # for events: what happened (English, translated in the template)
    flow: str = ""


def _bubble(request: web.Request, item: dict[str, Any]) -> Bubble:
    at = when(item.get("at"))
    kind = item["type"]
    if kind not in ("message_in", "message_out"):
        flow = str(item.get("flow") or "")
        return Bubble(
            "event", at, event=EVENTS.get(kind, kind), flow=flow, error=item.get("reason", "")
        )
    msg = item["message"]
    side = "in" if kind == "message_in" else "out"
    bubble = Bubble(side, at, text=str(msg.get("text") or ""))
    if side == "out":
        bubble.status = str(msg.get("status") or "")
        bubble.buttons = [str(b) for b in msg.get("quick_replies") or []]
        error = msg.get("error") or {}
        if error or bubble.status == "failed":
            bubble.error = str(error.get("message") or error.get("code") or "failed")
    template = msg.get("template")
    if side == "out" and isinstance(template, dict):
        bubble.template = str(template.get("name") or "")
        channel = runtime(request).channels.get(str(msg.get("channel") or ""))
        seen = channel.preview_template(template) if channel is not None else None
        if seen is not None and seen.known:
            bubble.text = seen.body
            bubble.header = seen.header or ""
            bubble.footer = seen.footer or ""
            bubble.buttons = [b.text for b in seen.buttons]
    elif side == "in" and not bubble.text:
        payload = msg.get("payload")
        bubble.text = str(payload or msg.get("msg_type") or "")
    return bubble


async def _timeline(request: web.Request, cid: str) -> list[Bubble]:
    return [_bubble(request, item) for item in await history(store(request), cid)]


def _run_view(run: dict[str, Any]) -> dict[str, Any]:
    results = [
        {"name": name, "value": r.get("value", ""), "category": r.get("category", "")}
        for name, r in (run.get("results") or {}).items()
    ]
    errors = run.get("errors") or []
    return {
        "flow": run["flow"],
        "status": run["status"],
        "started": when(run.get("created_on")),
        "ended": when(run.get("exited_on")) if run.get("exited_on") is not None else "",
        "path": [str(step[0]) for step in run.get("path") or []],
        "results": results,
        "error": str(errors[-1].get("message") or "") if errors else "",
    }


async def _contact_page(
    request: web.Request, contact: dict[str, Any], **extra: Any
) -> web.StreamResponse:
    rt, st = runtime(request), store(request)
    cid = contact["uuid"]
    at = now(request)
    windows = [
        {"channel": w.channel, "open": w.open(at), "until": when(w.until)}
        for w in service.windows(contact, rt.registry.routes)
    ]
    all_groups = [g["name"] for g in await st.groups()]
    return await page(
        request,
        "contacts/contact.html",
        labels=LABELS,
        contact=contact,
        created=when(contact.get("created_on")),
        timeline=await _timeline(request, cid),
        windows=windows,
        runs=[_run_view(r) for r in await runs_of(st, cid)],
        other_groups=[g for g in all_groups if g not in (contact.get("groups") or [])],
        flows=sorted(rt.registry.flows),
        reason_words=REASON_WORDS,
        **extra,
    )


@dataclass
class StartPreview:
    """What starting this contact in a flow would do: start it, or why not (in words), and
    the first message it would get (the send page's preview, of this contact)."""

    started: bool
    reason: str
    opening: start_service.Opening | None


async def _start_preview(request: web.Request, cid: str, flow: str) -> StartPreview:
    """The preview the Send flow page and ``POST /api/v1/starts/preview`` make, for one
    contact: the same services."""
    rt = runtime(request)
    request_model = _model(m.StartCreate, {"flow": flow, "contacts": [cid]}, "invalid_body")
    spec = await start_service.resolve(rt, request_model)
    counts = (await start_service.preview(rt, spec)).counts
    reasons = {**counts.skipped_by_reason, **counts.failed_by_reason}
    why = next((code for code, n in reasons.items() if n), "")
    return StartPreview(
        started=counts.started == 1,
        reason=REASON_WORDS.get(why, why),
        opening=await start_service.opening_for(rt, spec),
    )


@routes.get(r"/contacts/{uuid:[0-9a-f-]{36}}")
async def contact_page(request: web.Request) -> web.StreamResponse:
    """The contact; with ``?flow=``, the Start in flow card previews that flow for it."""
    contact = await contact_or_404(store(request), request.match_info["uuid"])
    chosen = request.query.get("flow", "").strip()
    preview = await _start_preview(request, contact["uuid"], chosen) if chosen else None
    return await _contact_page(request, contact, preview=preview, chosen=chosen)


@routes.post(r"/contacts/{uuid:[0-9a-f-]{36}}/start")
async def contact_start(request: web.Request) -> web.StreamResponse:
    """Start (or restart) the contact in a flow: ``POST /api/v1/contacts/{uuid}/start``."""
    cid = (await contact_or_404(store(request), request.match_info["uuid"]))["uuid"]
    spec = _model(m.FlowStart, {"flow": form_field(await form(request), "flow")}, "invalid_body")
    await start_service.start_one(runtime(request), cid, spec)
    notice = say(request, _("Started in {flow}."), flow=spec.flow)
    raise await redirect(request, f"/studio/contacts/{cid}", notice=notice)


@routes.get(r"/contacts/{uuid:[0-9a-f-]{36}}/timeline")
async def contact_timeline(request: web.Request) -> web.StreamResponse:
    """The timeline alone, for its live refresh (new messages, ticks moving)."""
    contact = await contact_or_404(store(request), request.match_info["uuid"])
    return fragment(
        request,
        "contacts/timeline.html",
        labels=LABELS,
        contact=contact,
        timeline=await _timeline(request, contact["uuid"]),
    )


def _fields_of(values: Form, contact: dict[str, Any]) -> dict[str, str | None]:
    """The fields an edit form changes: each shown field (empty: removed), and a new one."""
    fields: dict[str, str | None] = {}
    for key in contact.get("fields") or {}:
        if f"field:{key}" in values:
            fields[key] = form_field(values, f"field:{key}") or None
    new_key = form_field(values, "new_key")
    if new_key:
        fields[new_key] = form_field(values, "new_value") or None
    return fields


@routes.post(r"/contacts/{uuid:[0-9a-f-]{36}}/edit")
async def contact_edit(request: web.Request) -> web.StreamResponse:
    st, cid = store(request), request.match_info["uuid"]
    contact = await contact_or_404(st, cid)
    values = await form(request)
    data: dict[str, Any] = {
        "name": form_field(values, "name"),
        "language": form_field(values, "language") or None,
        "fields": _fields_of(values, contact),
    }
    spec = _model(m.ContactUpdate, data, "invalid_body")
    await service.update(st, now(request), cid, spec)
    raise await redirect(request, f"/studio/contacts/{cid}", notice=say(request, _("Saved.")))


@routes.post(r"/contacts/{uuid:[0-9a-f-]{36}}/status")
async def contact_status(request: web.Request) -> web.StreamResponse:
    """Opt out (``status=opted_out``) or back in (``active``), as PATCH does."""
    cid = request.match_info["uuid"]
    status = form_field(await form(request), "status")
    spec = _model(m.ContactUpdate, {"status": status}, "invalid_body")
    await service.update(store(request), now(request), cid, spec)
    notice = say(request, _("Opted out.") if status == "opted_out" else _("Opted in."))
    raise await redirect(request, f"/studio/contacts/{cid}", notice=notice)


@routes.post(r"/contacts/{uuid:[0-9a-f-]{36}}/groups")
async def contact_groups(request: web.Request) -> web.StreamResponse:
    """Add to a group (``add``: a name; a new name makes the group) or remove (``remove``)."""
    st, at, cid = store(request), now(request), request.match_info["uuid"]
    await contact_or_404(st, cid)
    values = await form(request)
    add, remove = form_field(values, "add"), form_field(values, "remove")
    members = _model(m.Members, {"contacts": [cid]}, "invalid_body")
    if add:
        if await st.group_by_ref(add) is None:
            await groups_service.create(
                st, at, _model(m.GroupCreate, {"name": add}, "invalid_body")
            )
        group = await group_or_404(st, add)
        await groups_service.change_members(st, at, group, members, True)
        notice = say(request, _("Added to {group}."), group=group["name"])
    elif remove:
        group = await group_or_404(st, remove)
        await groups_service.change_members(st, at, group, members, False)
        notice = say(request, _("Removed from {group}."), group=group["name"])
    else:
        raise ApiError(400, "invalid_body", say(request, _("Name a group.")))
    raise await redirect(request, f"/studio/contacts/{cid}", notice=notice)


@routes.post(r"/contacts/{uuid:[0-9a-f-]{36}}/delete")
async def contact_delete(request: web.Request) -> web.StreamResponse:
    cid = request.match_info["uuid"]
    contact = await contact_or_404(store(request), cid)
    await service.delete(store(request), cid)
    notice = say(request, _("Deleted {name}."), name=contact.get("name") or cid)
    raise await redirect(request, "/studio/contacts", notice=notice)
