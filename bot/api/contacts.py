"""The contacts and groups API: aiohttp handlers, the validators that answer a bad request with
:class:`bot.core.errors.ApiError`, and the CSV import's endpoint.

The rules themselves are :mod:`bot.core.contacts` and the import is :mod:`bot.work.contacts_import`
(shared with ``chasqui contacts import``); this module is their HTTP side.

Contacts are written by the engine (on commit, under the contact's lock) and by this API. An API
write never loses a sprint's nor is lost by it: ``Store.update_contacts`` writes
through a compare-and-set script that also refuses while the contact's lock is held (a sprint is
in progress and would overwrite it with the copy it read), and retries. See docs/contacts.md.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

from aiohttp import BodyPartReader, web

from bot.core.contacts import (
    FIELD_KEY,
    LANGUAGE,
    STATUSES,
    UrnError,
    group_name_problem,
    new_record,
    normalize_urn,
)
from bot.core.errors import ApiError, json_body
from bot.store import ContactBusy, Store
from bot.store.paging import decode_cursor, filtered_page, page_limit
from bot.work.contacts_import import Importer, csv_records


def _urn(value: Any) -> str:
    if not isinstance(value, str):
        raise ApiError(400, "invalid_urn", "urn must be text like whatsapp:+5511987654321")
    try:
        return normalize_urn(value)
    except UrnError as exc:
        raise ApiError(400, "invalid_urn", str(exc)) from None


def _clean_fields(value: Any, allow_null: bool) -> dict[str, str | None]:
    if not isinstance(value, dict):
        raise ApiError(400, "bad_request", "fields must be an object of key: text")
    out: dict[str, str | None] = {}
    for key, v in value.items():
        if not FIELD_KEY.match(str(key)):
            raise ApiError(
                400, "bad_request", f"field key {key!r}: lowercase letters, digits and _"
            )
        if v is None and allow_null:
            out[key] = None
        elif isinstance(v, (str, int, float)) and not isinstance(v, bool):
            out[key] = str(v)
        else:
            raise ApiError(400, "bad_request", f"field {key!r} must be text or a number")
    return out


def _language(value: Any) -> str:
    if value in (None, ""):
        return ""
    if not isinstance(value, str) or not LANGUAGE.match(value):
        raise ApiError(400, "bad_request", "language must be a code like es, pt or pt-BR")
    return value


def _status(value: Any) -> str:
    if value not in STATUSES:
        raise ApiError(400, "bad_request", f"status must be one of {', '.join(STATUSES)}")
    return str(value)


def _group_name(value: Any) -> str:
    problem = group_name_problem(value)
    if problem is not None:
        raise ApiError(400, "bad_request", problem)
    return str(value)


# -- the app's pieces --------------------------------------------------------------------------
def _runtime(request: web.Request) -> Any:
    from bot.api.app import RUNTIME

    return request.app[RUNTIME]


def _store(request: web.Request) -> Store:
    store: Store = _runtime(request).store
    return store


def _now(request: web.Request) -> float:
    return float(_runtime(request).clock.now())


async def _body(request: web.Request) -> dict[str, Any]:
    return await json_body(request)


async def contacts_for_urns(
    store: Store, urns: list[str], now: float, *, create: bool
) -> list[str | None]:
    """The contact uuid of each URN (None where there is none), creating the missing ones
    when ``create`` is set."""
    found = await store.contact_ids_for_urns(urns)
    missing = [u for u, c in zip(urns, found, strict=True) if c is None]
    if missing and create:
        made = await store.create_contacts([(u, new_record(u, now)) for u in missing])
        made_for = dict(zip(missing, (c for c, _ in made), strict=True))
        found = [c or made_for[u] for u, c in zip(urns, found, strict=True)]
    return found


def _busy(exc: ContactBusy) -> ApiError:
    return ApiError(
        409,
        "contact_busy",
        "the contact is being processed right now; try again in a moment",
        {"contacts": exc.cids[:20]},
    )


async def _contact_or_404(store: Store, cid: str) -> dict[str, Any]:
    contact = await store.get_contact(cid)
    if contact is None:
        raise ApiError(404, "unknown_contact", f"no contact {cid}")
    return contact


async def _group_or_404(store: Store, name: str) -> str:
    ids = await store.group_ids([name])
    if name not in ids:
        raise ApiError(404, "unknown_group", f"no group {name!r}")
    return ids[name]


# -- contacts ----------------------------------------------------------------------------------
async def create_contact(request: web.Request) -> web.Response:
    """Create a contact; idempotent on the URN (200 with the existing contact, unchanged)."""
    body = await _body(request)
    unknown = set(body) - {"urn", "name", "language", "fields", "groups", "status"}
    if unknown:
        raise ApiError(400, "bad_request", f"unknown keys: {', '.join(sorted(unknown))}")
    urn = _urn(body.get("urn"))
    name = body.get("name") or ""
    if not isinstance(name, str):
        raise ApiError(400, "bad_request", "name must be text")
    fields = {k: v for k, v in _clean_fields(body.get("fields") or {}, False).items() if v}
    groups = body.get("groups") or []
    if not isinstance(groups, list):
        raise ApiError(400, "bad_request", "groups must be a list of names")
    groups = list(dict.fromkeys(_group_name(g) for g in groups))
    extra: dict[str, Any] = {"fields": fields, "groups": groups}
    if body.get("language"):
        extra["language"] = _language(body["language"])
    if body.get("status"):
        extra["status"] = _status(body["status"])
    store, now = _store(request), _now(request)
    contact, created = await store.contact_for_urn(urn, name, now, **extra)
    if created and groups:
        ids = await store.group_ids(groups, create=True, now=now)
        await store.add_memberships([(ids[g], contact["uuid"]) for g in groups])
    return web.json_response(contact, status=201 if created else 200)


async def get_contact(request: web.Request) -> web.Response:
    return web.json_response(await _contact_or_404(_store(request), request.match_info["uuid"]))


CONTACTS_MEMBER = re.compile(r"^\d{13}\.\d{3}\|[0-9a-f-]{36}$")


async def list_contacts(request: web.Request) -> web.Response:
    """``?urn=`` finds one contact; otherwise a page of contacts in creation order, filtered by
    group, status, name prefix (case-insensitive) and created since, with a ``next`` cursor."""
    q = request.query
    store = _store(request)
    if "urn" in q:
        urn = _urn(q["urn"])
        cid = await store.contact_id_for_urn(urn)
        contact = await store.get_contact(cid) if cid else None
        if contact is None:
            raise ApiError(404, "unknown_contact", f"no contact with URN {urn}")
        return web.json_response(contact)
    limit = page_limit(q)
    try:
        since = float(q["created_since"]) if "created_since" in q else None
    except ValueError:
        raise ApiError(400, "bad_request", "created_since must be a number") from None
    status = _status(q["status"]) if "status" in q else None
    prefix = q.get("name", "").casefold()
    gid = await _group_or_404(store, q["group"]) if "group" in q else None
    after = decode_cursor(q["cursor"], CONTACTS_MEMBER) if q.get("cursor") else None

    async def fetch(last: str | None, count: int) -> list[str]:
        return await store.contact_page(last, since, count)

    async def load(members: Sequence[str]) -> list[dict[str, Any] | None]:
        cids = [m.split("|", 1)[1] for m in members]
        keep = await store.is_member(gid, cids) if gid else [True] * len(cids)
        chosen = iter(await store.contacts([c for c, k in zip(cids, keep, strict=True) if k]))
        return [wanted(next(chosen)) if kept else None for kept in keep]

    def wanted(contact: dict[str, Any] | None) -> dict[str, Any] | None:
        if contact is None or (status and contact.get("status", "active") != status):
            return None
        if prefix and not str(contact.get("name") or "").casefold().startswith(prefix):
            return None
        return contact

    page = await filtered_page(fetch, load, after, limit)
    return web.json_response({"contacts": page["items"], "next": page["next"]})


async def update_contact(request: web.Request) -> web.Response:
    """PATCH: name, language, status replace; fields merge (null removes a field)."""
    body = await _body(request)
    unknown = set(body) - {"name", "language", "status", "fields"}
    if unknown:
        raise ApiError(400, "bad_request", f"unknown keys: {', '.join(sorted(unknown))}")
    changes: dict[str, Any] = {}
    if "name" in body:
        if not isinstance(body["name"], str):
            raise ApiError(400, "bad_request", "name must be text")
        changes["name"] = body["name"]
    if "language" in body:
        changes["language"] = _language(body["language"])
    if "status" in body:
        changes["status"] = _status(body["status"])
    fields = _clean_fields(body["fields"], True) if "fields" in body else {}
    now = _now(request)

    def change(contact: dict[str, Any]) -> dict[str, Any]:
        if "status" in changes and changes["status"] != contact.get("status", "active"):
            contact["status_changed_on"] = now
        contact.update(changes)
        merged = dict(contact.get("fields") or {})
        for key, value in fields.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        contact["fields"] = merged
        return contact

    cid = request.match_info["uuid"]
    try:
        result = await _store(request).update_contacts([cid], change, now)
    except ContactBusy as exc:
        raise _busy(exc) from None
    if result.get(cid) is None:
        raise ApiError(404, "unknown_contact", f"no contact {cid}")
    return web.json_response(result[cid])


async def delete_contact(request: web.Request) -> web.Response:
    cid = request.match_info["uuid"]
    try:
        deleted = await _store(request).delete_contact(cid)
    except ContactBusy as exc:
        raise _busy(exc) from None
    if not deleted:
        raise ApiError(404, "unknown_contact", f"no contact {cid}")
    return web.json_response({"deleted": cid})


# -- groups ------------------------------------------------------------------------------------
async def list_groups(request: web.Request) -> web.Response:
    return web.json_response({"groups": await _store(request).groups()})


async def create_group(request: web.Request) -> web.Response:
    body = await _body(request)
    name = _group_name(body.get("name"))
    gid, created = await _store(request).ensure_group(name, _now(request))
    if not created:
        raise ApiError(409, "group_exists", f"there is a group {name!r} already")
    return web.json_response({"id": gid, "name": name, "count": 0}, status=201)


async def _rename_in_members(store: Store, gid: str, now: float, old: str, new: str) -> None:
    """Rename the group in every member's ``groups`` list, a batch of members at a time."""
    async for batch in store.group_members(gid):

        def change(contact: dict[str, Any]) -> dict[str, Any] | None:
            groups = list(contact.get("groups") or [])
            if old not in groups:
                return None
            contact["groups"] = [new if g == old else g for g in groups if g != new]
            return contact

        await store.update_contacts(batch, change, now)


async def rename_group(request: web.Request) -> web.Response:
    store, now = _store(request), _now(request)
    name = request.match_info["name"]
    gid = await _group_or_404(store, name)
    body = await _body(request)
    new = _group_name(body.get("name"))
    if new != name:
        if not await store.rename_group(gid, name, new):
            raise ApiError(409, "group_exists", f"there is a group {new!r} already")
        try:
            await _rename_in_members(store, gid, now, name, new)
        except ContactBusy as exc:
            raise _busy(exc) from None
    return web.json_response({"id": gid, "name": new})


async def delete_group(request: web.Request) -> web.Response:
    store, now = _store(request), _now(request)
    name = request.match_info["name"]
    gid = await _group_or_404(store, name)
    try:
        # the members' lists first (the set tells who they are), then the group itself
        async for batch in store.group_members(gid):

            def change(contact: dict[str, Any]) -> dict[str, Any] | None:
                groups = list(contact.get("groups") or [])
                if name not in groups:
                    return None
                contact["groups"] = [g for g in groups if g != name]
                return contact

            await store.update_contacts(batch, change, now)
    except ContactBusy as exc:
        raise _busy(exc) from None
    await store.drop_group(gid, name)
    return web.json_response({"deleted": name})


async def _members_of_body(
    store: Store, body: dict[str, Any], now: float, create: bool
) -> tuple[list[str], list[dict[str, Any]]]:
    """The contact uuids a members body names (``contacts`` or ``urns``), and what was wrong."""
    cids: list[str] = []
    problems: list[dict[str, Any]] = []
    if "contacts" in body:
        given = body["contacts"]
        if not isinstance(given, list) or not all(isinstance(c, str) for c in given):
            raise ApiError(400, "bad_request", "contacts must be a list of contact uuids")
        cids = list(dict.fromkeys(given))
    elif "urns" in body:
        given = body["urns"]
        if not isinstance(given, list):
            raise ApiError(400, "bad_request", "urns must be a list")
        urns: list[str] = []
        for raw in given:
            try:
                urns.append(normalize_urn(raw) if isinstance(raw, str) else normalize_urn(""))
            except UrnError as exc:
                problems.append({"urn": raw, "code": "invalid_urn", "message": str(exc)})
        urns = list(dict.fromkeys(urns))
        found = await contacts_for_urns(store, urns, now, create=create)
        for urn, cid in zip(urns, found, strict=True):
            if cid is None:
                problems.append(
                    {"urn": urn, "code": "unknown_contact", "message": f"no contact {urn}"}
                )
            else:
                cids.append(cid)
    else:
        raise ApiError(400, "bad_request", 'give {"contacts": [uuid, ...]} or {"urns": [...]}')
    if len(cids) + len(problems) > 10_000:
        raise ApiError(400, "bad_request", "at most 10,000 members per request")
    return cids, problems


async def change_members(request: web.Request) -> web.Response:
    """POST adds, DELETE removes members in bulk; the group set and each contact's ``groups``
    list change together (one script per contact)."""
    store, now = _store(request), _now(request)
    name = request.match_info["name"]
    gid = await _group_or_404(store, name)
    adding = request.method == "POST"
    body = await _body(request)
    cids, problems = await _members_of_body(store, body, now, create=adding)

    def change(contact: dict[str, Any]) -> dict[str, Any] | None:
        groups = list(contact.get("groups") or [])
        if (name in groups) == adding:
            return None
        contact["groups"] = [*groups, name] if adding else [g for g in groups if g != name]
        return contact

    try:
        results = await store.update_contacts(cids, change, now)
    except ContactBusy as exc:
        raise _busy(exc) from None
    for cid in cids:
        if results.get(cid) is None:
            problems.append(
                {"contact": cid, "code": "unknown_contact", "message": "no such contact"}
            )
    if adding:  # a member whose list already had the group: make sure the set has it too
        await store.add_memberships([(gid, c) for c in cids if results.get(c) is not None])
    done = sum(1 for c in cids if results.get(c) is not None)
    return web.json_response(
        {"group": name, "added" if adding else "removed": done, "errors": problems}
    )


async def _decoded(raw: AsyncIterator[bytes]) -> AsyncIterator[str]:
    async for line in raw:
        try:
            yield line.decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(400, "bad_request", "the CSV must be UTF-8") from None


async def _request_lines(request: web.Request) -> AsyncIterator[bytes]:
    """The CSV's lines, streamed: the raw body (``text/csv``) or the first file of a
    multipart form. Never the whole file in memory (the body size limit does not apply)."""
    if request.content_type.startswith("multipart/"):
        reader = await request.multipart()
        async for part in reader:
            if isinstance(part, BodyPartReader) and (part.filename or part.name == "file"):
                while True:
                    line = await part.readline()
                    if not line:
                        return
                    yield line
        raise ApiError(400, "bad_request", "the multipart form has no file part")
    else:
        while True:
            line = await request.content.readline()
            if not line:
                return
            yield line


async def import_contacts(request: web.Request) -> web.Response:
    store, now = _store(request), _now(request)
    groups = [_group_name(g) for g in request.query.getall("group", [])]
    importer = Importer(store, now, groups)
    async for line, cells in csv_records(_decoded(_request_lines(request))):
        await importer.feed(line, cells)
    report = await importer.finish()
    return web.json_response(report.as_json())


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/contacts", list_contacts)
    app.router.add_post("/api/v1/contacts", create_contact)
    app.router.add_post("/api/v1/contacts/import", import_contacts)
    app.router.add_get("/api/v1/contacts/{uuid}", get_contact)
    app.router.add_patch("/api/v1/contacts/{uuid}", update_contact)
    app.router.add_delete("/api/v1/contacts/{uuid}", delete_contact)
    app.router.add_get("/api/v1/groups", list_groups)
    app.router.add_post("/api/v1/groups", create_group)
    app.router.add_patch("/api/v1/groups/{name}", rename_group)
    app.router.add_delete("/api/v1/groups/{name}", delete_group)
    app.router.add_post("/api/v1/groups/{name}/members", change_members)
    app.router.add_delete("/api/v1/groups/{name}/members", change_members)
