"""The contacts API: create, list (filtered, searched, paged), read, update, delete, and the CSV
import. Each is a service function taking the typed request model (``create``, ``find``,
``update``, ``delete``, ``import_rows``) that the JSON handlers below, Studio's pages and the CLI
all call, so none of them has logic the others lack.

The rules themselves are :mod:`bot.core.contacts` and the import is :mod:`bot.work.contacts_import`
(shared with ``chasqui contacts import``); this module is their HTTP side.

Contacts are written by the engine (on commit, under the contact's lock) and by this API. An API
write never loses a sprint's nor is lost by it: ``Store.update_contacts`` writes
through a compare-and-set script that also refuses while the contact's lock is held (a sprint is
in progress and would overwrite it with the copy it read), and retries. See docs/contacts.md.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from bot.api import models as m
from bot.api.context import now, store
from bot.api.lookup import busy, contact_or_404, group_or_404, valid_urn
from bot.api.routes import Op, body, query
from bot.core.contacts import group_name_problem, urns_problem
from bot.core.errors import ApiError
from bot.engine.sprint import Route
from bot.store import ContactBusy, Store
from bot.store.paging import decode_cursor, filtered_page
from bot.store.search import matches, query_words, scan_order
from bot.work.contacts_import import READ_CHUNK, Importer, ImportReport, import_csv

CONTACTS_MEMBER = re.compile(r"^\d{13}\.\d{3}\|[0-9a-f-]{36}$")
SEARCH_MEMBER = re.compile(r"^[^\W_]{1,24} [0-9a-f-]{36}$")


@dataclass
class Found:
    """A page of contacts and the cursor of the next page (None on the last)."""

    contacts: list[dict[str, Any]]
    next: str | None


# -- the services: pages, the JSON API and the CLI call these -----------------------------------
async def create(st: Store, at: float, spec: m.ContactCreate) -> dict[str, Any]:
    """Create a contact; 409 ``urn_in_use`` (with the existing contact's uuid) when its URN
    has a contact already."""
    urns = valid_urns(spec.all_urns())
    names: list[str] = []
    for ref in dict.fromkeys(spec.groups):
        group = await st.group_by_ref(ref)
        if group is None:
            problem = group_name_problem(ref)
            if problem is not None:
                raise ApiError(400, "invalid_body", f"groups: {problem}")
        names.append(group["name"] if group else ref)
    names = list(dict.fromkeys(names))
    extra: dict[str, Any] = {
        "fields": {k: str(v) for k, v in spec.fields.items() if v != ""},
        "groups": names,
        "status": spec.status,
    }
    if spec.language:
        extra["language"] = spec.language
    contact, created = await st.contact_for_urn(urns[0], spec.name, at, urns=urns, **extra)
    if not created:
        taken = next((u for u in urns if u in (contact.get("urns") or [])), urns[0])
        raise urn_in_use(taken, contact["uuid"])
    if names:
        ids = await st.group_ids(names, create=True, now=at)
        await st.add_memberships([(ids[g], contact["uuid"]) for g in names])
    return contact


async def find(st: Store, q: m.ContactQuery) -> Found:
    """A page of contacts filtered by URN, search words (``q``: through the search index, in
    word order), group, status, being in a flow, name prefix (case-insensitive) and created
    since; without ``q`` in creation order."""
    if q.urn is not None:
        cid = await st.contact_id_for_urn(valid_urn(q.urn))
        contact = await st.get_contact(cid) if cid else None
        return Found([contact] if contact else [], None)
    prefix = (q.name or "").casefold()
    gid = (await group_or_404(st, q.group))["id"] if q.group is not None else None
    wanted = scan_order(query_words(q.q or ""))
    shape = SEARCH_MEMBER if wanted else CONTACTS_MEMBER
    after = decode_cursor(q.cursor, shape) if q.cursor else None

    async def fetch(last: str | None, count: int) -> list[str]:
        if wanted:
            return await st.search_page(wanted[0], last, count)
        return await st.contact_page(last, q.created_since, count)

    def cid_of(member: str) -> str:
        return member.rsplit(" ", 1)[1] if wanted else member.split("|", 1)[1]

    async def load(members: Sequence[str]) -> list[dict[str, Any] | None]:
        cids = [cid_of(member) for member in members]
        keep = await st.is_member(gid, cids) if gid else [True] * len(cids)
        if q.in_flow is not None:
            flowing = await st.in_flow(cids)
            keep = [k and f == q.in_flow for k, f in zip(keep, flowing, strict=True)]
        chosen = iter(await st.contacts([c for c, k in zip(cids, keep, strict=True) if k]))
        return [
            kept_one(next(chosen), member) if kept else None
            for kept, member in zip(keep, members, strict=True)
        ]

    def kept_one(contact: dict[str, Any] | None, member: str) -> dict[str, Any] | None:
        if contact is None or (q.status and contact.get("status", "active") != q.status):
            return None
        if prefix and not str(contact.get("name") or "").casefold().startswith(prefix):
            return None
        if wanted and not matches(contact, wanted, member):
            return None
        since = q.created_since
        if wanted and since is not None and float(contact.get("created_on") or 0) < since:
            return None
        return contact

    page = await filtered_page(fetch, load, after, q.limit)
    return Found(page["items"], page["next"])


async def update(st: Store, at: float, cid: str, spec: m.ContactUpdate) -> dict[str, Any]:
    """Name, language, status replace; fields merge (null removes a field)."""
    given = spec.model_fields_set
    changes = {k: v for k, v in spec.model_dump(include={"name", "status"}).items() if k in given}
    if "language" in given:
        changes["language"] = spec.language or ""
    fields = {k: None if v is None else str(v) for k, v in spec.fields.items()}
    urns = valid_urns(spec.urns) if spec.urns is not None else None
    lost: list[str] = []
    if urns is not None:  # indexed first: a URN of another contact refuses the whole change
        taken = await st.claim_urns(cid, urns)
        if taken is not None:
            raise urn_in_use(*taken)
        changes["urns"] = urns

    def change(contact: dict[str, Any]) -> dict[str, Any]:
        if urns is not None:
            lost[:] = [u for u in contact.get("urns") or [] if u not in urns]
        if "status" in changes and changes["status"] != contact.get("status", "active"):
            contact["status_changed_on"] = at
        contact.update(changes)
        merged = dict(contact.get("fields") or {})
        for key, value in fields.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        contact["fields"] = merged
        return contact

    try:
        result = await st.update_contacts([cid], change, at)
    except ContactBusy as exc:
        raise busy(exc) from None
    found = result.get(cid)
    if found is None:
        await st.release_urns(cid, urns or [])
        raise ApiError(404, "unknown_contact", f"no contact {cid}")
    await st.release_urns(cid, lost)
    return found


def valid_urns(given: list[str]) -> list[str]:
    """The URNs in stored form; 400 when one is not a URN, or two share a scheme."""
    urns = list(dict.fromkeys(valid_urn(u) for u in given))
    problem = urns_problem(urns)
    if problem is not None:
        raise ApiError(400, "invalid_urn", problem)
    return urns


def urn_in_use(urn: str, owner: str) -> ApiError:
    return ApiError(
        409, "urn_in_use", f"{urn} is the URN of contact {owner}", {"contact": owner, "urn": urn}
    )


async def delete(st: Store, cid: str) -> None:
    """Delete a contact and everything it has; 404 when there is none."""
    try:
        deleted = await st.delete_contact(cid)
    except ContactBusy as exc:
        raise busy(exc) from None
    if not deleted:
        raise ApiError(404, "unknown_contact", f"no contact {cid}")


async def import_rows(
    st: Store, at: float, groups: list[str], chunks: AsyncIterator[bytes]
) -> ImportReport:
    """Import a CSV read a chunk at a time, every row also added to ``groups``."""
    for group in groups:
        problem = group_name_problem(group)
        if problem is not None:
            raise ApiError(400, "bad_request", f"group: {problem}")
    return await import_csv(Importer(st, at, groups), chunks)


EXPORT_PAGE = 500


async def _every(st: Store, q: m.ContactQuery) -> AsyncIterator[dict[str, Any]]:
    """Every contact ``q`` finds, a page at a time (``q``'s cursor and limit aside)."""
    cursor = None
    while True:
        page = await find(st, q.model_copy(update={"cursor": cursor, "limit": EXPORT_PAGE}))
        for contact in page.contacts:
            yield contact
        if page.next is None:
            return
        cursor = page.next


async def export_csv(st: Store, q: m.ContactQuery) -> AsyncIterator[str]:
    """The contacts ``q`` finds as CSV text, a page of rows at a time, in the columns the import
    reads (``urn``, ``name``, ``language``, ``groups`` separated by ``;``, ``field:<key>``) plus
    ``uuid`` and ``status``: never the whole list in memory. The field columns are those the
    listed contacts have, found by a first pass over them."""
    keys: set[str] = set()
    async for contact in _every(st, q):
        keys.update(contact.get("fields") or {})
    fields = sorted(keys)
    out = io.StringIO()
    writer = csv.writer(out)
    header = ["uuid", "urn", "name", "language", "status", "groups"]
    writer.writerow([*header, *(f"field:{k}" for k in fields)])
    rows = 0
    async for contact in _every(st, q):
        values = contact.get("fields") or {}
        writer.writerow(
            [
                contact["uuid"],
                (contact.get("urns") or [""])[0],
                _cell(contact.get("name") or ""),
                contact.get("language") or "",
                contact.get("status", "active"),
                ";".join(_cell(g) for g in contact.get("groups") or []),
                *(_cell(values.get(k, "")) for k in fields),
            ]
        )
        rows += 1
        if rows % EXPORT_PAGE == 0:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    yield out.getvalue()


def _cell(value: str) -> str:
    """A cell a spreadsheet will not run as a formula (``=``, ``+``, ``-``, ``@`` first)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value


@dataclass
class Window:
    """A channel's conversation window with a contact (WhatsApp's 24 hours since its last
    message): free text may go until ``until``; None when the contact never wrote there."""

    channel: str
    until: float | None

    def open(self, now: float) -> bool:
        return self.until is not None and now < self.until


def windows(contact: dict[str, Any], routes: Sequence[Route]) -> list[Window]:
    """The contact's window on each channel that has one (as the engine decides sends)."""
    last = contact.get("last_inbound") or {}
    found = []
    for route in routes:
        if route.window is not None:
            at = last.get(route.name)
            found.append(Window(route.name, None if at is None else float(at) + route.window))
    return found


# -- the JSON API --------------------------------------------------------------------------------
async def create_contact(request: web.Request) -> web.Response:
    contact = await create(store(request), now(request), await body(request, m.ContactCreate))
    return web.json_response(contact, status=201)


async def get_contact(request: web.Request) -> web.Response:
    return web.json_response(await contact_or_404(store(request), request.match_info["uuid"]))


async def list_contacts(request: web.Request) -> web.Response:
    found = await find(store(request), query(request, m.ContactQuery))
    return web.json_response({"contacts": found.contacts, "next": found.next})


async def update_contact(request: web.Request) -> web.Response:
    spec = await body(request, m.ContactUpdate)
    cid = request.match_info["uuid"]
    return web.json_response(await update(store(request), now(request), cid, spec))


async def delete_contact(request: web.Request) -> web.Response:
    cid = request.match_info["uuid"]
    await delete(store(request), cid)
    return web.json_response({"deleted": cid})


async def _request_chunks(request: web.Request) -> AsyncIterator[bytes]:
    """The CSV's bytes, streamed: the raw body (``text/csv``) or the first file of a multipart
    form. Never the whole file in memory (the body size limit does not apply)."""
    if request.content_type.startswith("multipart/"):
        try:
            reader = await request.multipart()
            async for part in reader:
                if isinstance(part, BodyPartReader) and (part.filename or part.name == "file"):
                    while data := await part.read_chunk(READ_CHUNK):
                        yield data
                    return
        except (HttpProcessingError, ValueError) as exc:  # a form aiohttp cannot read
            raise ApiError(400, "bad_request", f"the multipart form is malformed: {exc}") from None
        raise ApiError(400, "bad_request", "the multipart form has no file part")
    else:
        async for data in request.content.iter_chunked(READ_CHUNK):
            yield data


async def import_contacts(request: web.Request) -> web.Response:
    groups = request.query.getall("group", [])
    report = await import_rows(store(request), now(request), groups, _request_chunks(request))
    return web.json_response(report.as_json())


CSV_BODY = {
    "required": True,
    "description": "A CSV with a header row: `urn` (required), `name`, `language`, and any "
    "`field:<key>` columns; `urn:<scheme>` columns give the contact more URNs (one per "
    "scheme). Sent raw (`text/csv`) or as the file of a multipart form.",
    "content": {
        "text/csv": {"schema": {"type": "string"}},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary"}},
                "required": ["file"],
            }
        },
    },
}
IMPORT_QUERY = {
    "name": "group",
    "in": "query",
    "required": False,
    "description": "Add every imported contact to this group (by name; repeat for several).",
    "schema": {"type": "array", "items": {"type": "string"}},
    "style": "form",
    "explode": True,
}

OPS = [
    Op(
        "GET",
        "/api/v1/contacts",
        list_contacts,
        "Contacts, filtered and paged",
        m.ContactPage,
        query=m.ContactQuery,
        errors=("bad_request", "invalid_urn", "unknown_group"),
    ),
    Op(
        "POST",
        "/api/v1/contacts",
        create_contact,
        "Create a contact",
        m.Contact,
        status=201,
        body=m.ContactCreate,
        errors=("invalid_body", "invalid_urn", "urn_in_use"),
    ),
    Op(
        "POST",
        "/api/v1/contacts/import",
        import_contacts,
        "Import contacts from a CSV: create new URNs, update known ones",
        m.ImportReport,
        errors=("bad_request",),
        doc={"requestBody": CSV_BODY, "parameters": [IMPORT_QUERY]},
    ),
    Op(
        "GET",
        "/api/v1/contacts/{uuid}",
        get_contact,
        "A contact",
        m.Contact,
        errors=("unknown_contact",),
    ),
    Op(
        "PATCH",
        "/api/v1/contacts/{uuid}",
        update_contact,
        "Change a contact: name, language, status replace; fields merge",
        m.Contact,
        body=m.ContactUpdate,
        errors=("invalid_body", "invalid_urn", "urn_in_use", "unknown_contact", "contact_busy"),
    ),
    Op(
        "DELETE",
        "/api/v1/contacts/{uuid}",
        delete_contact,
        "Delete a contact, its runs, messages and memberships",
        m.Deleted,
        errors=("unknown_contact", "contact_busy"),
    ),
]
