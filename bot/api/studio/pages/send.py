"""Send flow: pick a flow and whom (groups, contacts found as you type, URNs), see the preview
(reach, each exclusion with its count, the opening message as a sample contact would see it,
template problems), then send now, at a time, or spread over a while.

The choice is a GET form (the page's URL says it: reload-safe, no CSRF token in it); sending is a
second, POST form carrying the same choice. Both go through :mod:`bot.api.start_service`, as the
JSON API does."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from multidict import MultiMapping
from pydantic import ValidationError

from bot.api import contacts as contact_service
from bot.api import models as m
from bot.api import start_service as svc
from bot.api.context import runtime
from bot.api.routes import invalid
from bot.api.studio.i18n import translator
from bot.api.studio.render import form, fragment, lang, page, redirect, user
from bot.core.errors import ApiError
from bot.work.runtime import Runtime

routes = web.RouteTableDef()

FOUND = 10  # contacts and groups a search shows

# Why a contact is left out of a start, or cannot be reached, in words (English; translated in
# the locale files): the preview's exclusions, the starts' failures.
REASON_WORDS = {
    "opted_out": "Opted out",
    "blocked": "Blocked",
    "no_route": "No channel reaches them",
    "already_started": "Were in this flow already",
    "in_other_flow": "In another flow now",
    "unknown_contact": "No such contact (or deleted)",
    "outside_24h_window": "Outside the 24-hour window: only a template reaches them",
    "started_since": "Started since by another start",
}


@dataclass
class Choice:
    """What the form says: a flow, whom, and the two exclusions."""

    flow: str = ""
    groups: list[str] = field(default_factory=list)
    contacts: list[str] = field(default_factory=list)
    urns: list[str] = field(default_factory=list)
    skip_started: bool = False  # not restart_participants
    skip_active: bool = False  # exclude_active

    @classmethod
    def read(cls, values: MultiMapping[Any]) -> Choice:
        def texts(name: str) -> list[str]:
            found = (v.strip() for v in values.getall(name, []) if isinstance(v, str))
            return list(dict.fromkeys(v for v in found if v))

        urns = texts("urns")
        return cls(
            flow=texts("flow")[0] if texts("flow") else "",
            groups=texts("group"),
            contacts=texts("contact"),
            urns=[u.strip() for text in urns for u in text.replace(",", "\n").splitlines() if u],
            skip_started=bool(texts("skip_started")),
            skip_active=bool(texts("skip_active")),
        )

    @property
    def targets(self) -> bool:
        return bool(self.groups or self.contacts or self.urns)

    def request(self, **when: Any) -> m.StartCreate:
        """The start request this choice makes (``when``: send_at / spread_over)."""
        try:
            return m.StartCreate(
                flow=self.flow,
                groups=self.groups,
                contacts=self.contacts,
                urns=self.urns,
                restart_participants=not self.skip_started,
                exclude_active=self.skip_active,
                **when,
            )
        except ValidationError as exc:
            raise invalid("invalid_body", exc) from None


async def _found(rt: Runtime, q: str, chosen: Choice) -> tuple[list[dict[str, Any]], list[Any]]:
    """Contacts (through the contacts' search) and groups (by name) matching ``q``, without
    those already chosen."""
    q = q.strip()
    if not q:
        return [], []
    page_of = await contact_service.find(rt.store, m.ContactQuery(q=q, limit=FOUND))
    people = [c for c in page_of.contacts if c["uuid"] not in chosen.contacts]
    needle = q.casefold()
    groups = [
        g
        for g in await rt.store.groups()
        if needle in g["name"].casefold() and g["uuid"] not in chosen.groups
    ]
    return people, groups[:FOUND]


@routes.get("/send")
async def send_page(request: web.Request) -> web.StreamResponse:
    rt = runtime(request)
    choice = Choice.read(request.query)
    q = request.query.get("q", "")
    groups = await rt.store.groups()
    chosen = [c for c in await rt.store.contacts(choice.contacts) if c] if choice.contacts else []
    people, _ = await _found(rt, q, choice)
    preview: m.Preview | None = None
    opening: svc.Opening | None = None
    problem = ""
    if choice.flow and choice.targets:
        try:
            spec = await svc.resolve(rt, choice.request())
            preview = await svc.preview(rt, spec)
            opening = await svc.opening_for(rt, spec)
        except ApiError as exc:
            problem = exc.message
    return await page(
        request,
        "send/index.html",
        flows=sorted(rt.registry.flows),
        groups=groups,
        choice=choice,
        chosen=chosen,
        q=q,
        found=people,
        preview=preview,
        opening=opening,
        problem=problem,
        reason_words=REASON_WORDS,
    )


@routes.get("/send/search")
async def search(request: web.Request) -> web.StreamResponse:
    """The contacts and groups matching ``q``, as checkboxes of the choice form."""
    rt = runtime(request)
    people, groups = await _found(rt, request.query.get("q", ""), Choice.read(request.query))
    return fragment(request, "send/_found.html", found=people, found_groups=groups)


@routes.post("/send")
async def send(request: web.Request) -> web.StreamResponse:
    values = await form(request)
    choice = Choice.read(values)
    if not choice.targets:
        raise ApiError(400, "invalid_body", "Choose a group, a contact or a URN.")
    when = str(values.get("when") or "now")
    timing: dict[str, Any] = {}
    if when == "at":
        timing["send_at"] = str(values.get("send_at") or "").strip() or None
        if timing["send_at"] is None:
            raise ApiError(400, "invalid_body", "Say when to send it.")
    elif when == "spread":
        timing["spread_over"] = str(values.get("spread_over") or "").strip() or None
    rt = runtime(request)
    spec = await svc.resolve(rt, choice.request(**timing))
    start, _ = await svc.create(rt, spec, by=user(request).name)
    _ = translator(lang(request))
    notice = _("Scheduled.") if spec.send_at else _("Started.")
    raise await redirect(request, f"/studio/starts/{start.uuid}", notice=notice)
