"""The contacts and groups API, and the CSV import (also used by ``chasqui contacts import``).

Contacts are written by the engine (on commit, under the contact's lock) and by this API. An API
write never loses a sprint's nor is lost by it: :meth:`bot.store.Store.update_contacts` writes
through a compare-and-set script that also refuses while the contact's lock is held (a sprint is
in progress and would overwrite it with the copy it read), and retries. See docs/contacts.md.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import phonenumbers
from aiohttp import BodyPartReader, web

from bot.errors import ApiError, json_body
from bot.paging import decode_cursor, encode_cursor, page_limit
from bot.store import ContactBusy, Store, index_member

STATUSES = ("active", "opted_out", "blocked")
PHONE_SCHEMES = ("whatsapp", "tel")
SCHEMES = ("whatsapp", "tel", "telegram", "ext", "console")
MAX_SCANNED = 5000  # index entries one list request looks at before it answers with a cursor
IMPORT_CHUNK = 1000
MAX_ERRORS_LISTED = 1000
_LANGUAGE = re.compile(r"^[a-z]{2,3}([_-][A-Za-z0-9]{2,8})?$")
_FIELD_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class UrnError(ValueError):
    pass


def normalize_urn(urn: str) -> str:
    """The URN in its stored form: phone schemes in E.164 (``whatsapp:+5511...``), others as
    given. Raises :class:`UrnError` with a message fit for the person who typed it."""
    scheme, sep, path = urn.strip().partition(":")
    scheme, path = scheme.lower(), path.strip()
    if not sep or not path:
        raise UrnError(f"{urn!r} is not a URN: write scheme:path, e.g. whatsapp:+5511987654321")
    if scheme not in SCHEMES:
        raise UrnError(f"unknown URN scheme {scheme!r}: use one of {', '.join(SCHEMES)}")
    if scheme == "whatsapp" and path.startswith("bsuid:"):
        if not re.match(r"^bsuid:[A-Za-z]{2}\.[A-Za-z0-9.]+$", path):
            raise UrnError(f"{urn!r}: not a WhatsApp business-scoped user id")
        return f"whatsapp:{path}"
    if scheme in PHONE_SCHEMES:
        digits = re.sub(r"[\s().-]", "", path)
        if not digits.startswith("+"):
            digits = "+" + digits.removeprefix("00")
        try:
            number = phonenumbers.parse(digits, None)
        except phonenumbers.NumberParseException:
            number = None
        if number is None or not phonenumbers.is_valid_number(number):
            raise UrnError(
                f"{urn!r}: not a valid phone number; give it in international form with the "
                "country code, e.g. +5511987654321"
            )
        return f"{scheme}:" + phonenumbers.format_number(
            number, phonenumbers.PhoneNumberFormat.E164
        )
    if scheme == "telegram" and not path.isdigit():
        raise UrnError(f"{urn!r}: a telegram URN is the numeric chat id, e.g. telegram:123456")
    return f"{scheme}:{path}"


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
        if not _FIELD_KEY.match(str(key)):
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
    if not isinstance(value, str) or not _LANGUAGE.match(value):
        raise ApiError(400, "bad_request", "language must be a code like es, pt or pt-BR")
    return value


def _status(value: Any) -> str:
    if value not in STATUSES:
        raise ApiError(400, "bad_request", f"status must be one of {', '.join(STATUSES)}")
    return str(value)


def _group_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 64 or value != value.strip():
        raise ApiError(
            400, "bad_request", "a group name is 1 to 64 characters, no leading/trailing spaces"
        )
    return value


# -- the app's pieces --------------------------------------------------------------------------
def _runtime(request: web.Request) -> Any:
    from bot.server import RUNTIME

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
        made = await store.create_contacts([(u, _new_record(u, now)) for u in missing])
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
    found: list[dict[str, Any]] = []
    scanned, last, exhausted = 0, after, False
    while len(found) < limit and scanned < MAX_SCANNED:
        members = await store.contact_page(last, since, min(limit * 2, 500))
        if not members:
            exhausted = True
            break
        scanned += len(members)
        cids = [m.split("|", 1)[1] for m in members]
        keep = await store.is_member(gid, cids) if gid else [True] * len(cids)
        contacts = await store.contacts([c for c, k in zip(cids, keep, strict=True) if k])
        chosen = iter(contacts)
        for member, kept in zip(members, keep, strict=True):
            last = member
            contact = next(chosen) if kept else None
            if contact is None:
                continue
            if status and contact.get("status", "active") != status:
                continue
            if prefix and not str(contact.get("name") or "").casefold().startswith(prefix):
                continue
            found.append(contact)
            if len(found) == limit:
                break
    if not exhausted and last is not None and len(found) == limit:
        # one look ahead, so that the last page says it is the last
        exhausted = not await store.contact_page(last, since, 1)
    next_cursor = None if exhausted or last is None else encode_cursor(last)
    return web.json_response({"contacts": found, "next": next_cursor})


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


# -- CSV import --------------------------------------------------------------------------------
def _new_record(urn: str, now: float) -> dict[str, Any]:
    return {
        "uuid": str(uuid.uuid4()),
        "name": "",
        "urns": [urn],
        "fields": {},
        "groups": [],
        "status": "active",
        "created_on": now,
    }


@dataclass
class ImportReport:
    rows: int = 0
    created: int = 0
    updated: int = 0
    failed: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    def error(self, row: int, code: str, message: str) -> None:
        self.failed += 1
        if len(self.errors) < MAX_ERRORS_LISTED:
            self.errors.append({"row": row, "code": code, "message": message})

    def as_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "created": self.created,
            "updated": self.updated,
            "failed": self.failed,
            "errors": self.errors,
            "errors_truncated": self.failed > len(self.errors),
        }


@dataclass
class _Row:
    line: int
    urn: str
    name: str | None
    language: str | None
    fields: dict[str, str]
    groups: list[str]


class Importer:
    """Rows in, contacts out, a chunk at a time: one pipelined lookup of the chunk's URNs, one
    pipelined create of the new ones (with their group sets), and compare-and-set updates of the
    existing ones (a re-import updates: name, language, fields merge, groups added)."""

    def __init__(self, store: Store, now: float, groups: Iterable[str] = ()) -> None:
        self.store, self.now = store, now
        self.default_groups = list(groups)
        self.report = ImportReport()
        self.columns: list[str] | None = None
        self._chunk: list[_Row] = []

    async def feed(self, line: int, cells: list[str]) -> None:
        if self.columns is None:
            self._header(cells)
            return
        if not any(c.strip() for c in cells):
            return
        self.report.rows += 1
        row = self._row(line, cells)
        if row is not None:
            self._chunk.append(row)
        if len(self._chunk) >= IMPORT_CHUNK:
            await self.flush()

    def _header(self, cells: list[str]) -> None:
        columns = [c.strip().lower() for c in cells]
        if columns and columns[0].startswith("\ufeff"):
            columns[0] = columns[0][1:]
        if "urn" not in columns and "phone" not in columns:
            raise ApiError(
                400,
                "bad_request",
                "the CSV header needs a urn (or phone) column",
                {"header": cells},
            )
        known = {"urn", "phone", "name", "language", "group", "groups"}
        for c in columns:
            if c not in known and not (c.startswith("field:") and _FIELD_KEY.match(c[6:])):
                raise ApiError(
                    400,
                    "bad_request",
                    f"unknown column {c!r}: use urn, phone, name, language, group(s), field:<key>",
                )
        self.columns = columns

    def _row(self, line: int, cells: list[str]) -> _Row | None:
        assert self.columns is not None
        if len(cells) > len(self.columns):
            self.report.error(
                line, "bad_row", f"{len(cells)} cells for {len(self.columns)} columns"
            )
            return None
        values = dict(zip(self.columns, (c.strip() for c in cells), strict=False))
        raw = values.get("urn") or ""
        if not raw and values.get("phone"):
            raw = "whatsapp:" + values["phone"]
        if not raw:
            self.report.error(line, "invalid_urn", "no urn (or phone) in this row")
            return None
        try:
            urn = normalize_urn(raw)
        except UrnError as exc:
            self.report.error(line, "invalid_urn", str(exc))
            return None
        language = values.get("language")
        if language and not _LANGUAGE.match(language):
            self.report.error(line, "bad_row", f"language {language!r} is not a code like es")
            return None
        groups = list(self.default_groups)
        for cell in (values.get("group") or "", values.get("groups") or ""):
            groups += [g.strip() for g in cell.split(";") if g.strip()]
        if any(len(g) > 64 for g in groups):
            self.report.error(line, "bad_row", "a group name is at most 64 characters")
            return None
        fields = {k[6:]: v for k, v in values.items() if k.startswith("field:") and v}
        return _Row(
            line,
            urn,
            values.get("name") or None,
            language or None,
            fields,
            list(dict.fromkeys(groups)),
        )

    async def flush(self) -> None:
        rows, self._chunk = self._chunk, []
        if not rows:
            return
        by_urn: dict[str, _Row] = {}
        for row in rows:  # the same URN twice in a chunk: the later row's values win
            earlier = by_urn.get(row.urn)
            if earlier is not None:
                row.fields = {**earlier.fields, **row.fields}
                row.groups = list(dict.fromkeys(earlier.groups + row.groups))
                row.name = row.name or earlier.name
                row.language = row.language or earlier.language
            by_urn[row.urn] = row
        urns = list(by_urn)
        ids = await self.store.group_ids(
            {g for r in by_urn.values() for g in r.groups}, create=True, now=self.now
        )
        found = await self.store.contact_ids_for_urns(urns)
        new = [u for u, c in zip(urns, found, strict=True) if c is None]
        existing = {c: by_urn[u] for u, c in zip(urns, found, strict=True) if c is not None}
        if new:
            records = []
            for u in new:
                r = by_urn[u]
                record = _new_record(u, self.now)
                record.update(name=r.name or "", fields=r.fields, groups=r.groups)
                if r.language:
                    record["language"] = r.language
                records.append((u, record))
            made = await self.store.create_contacts(records)
            pairs = []
            for (u, record), (cid, created) in zip(records, made, strict=True):
                if created and cid == record["uuid"]:
                    self.report.created += 1
                    pairs += [(ids[g], cid) for g in by_urn[u].groups]
                else:  # created meanwhile by someone else, or an index repaired: update it
                    existing[cid] = by_urn[u]
            await self.store.add_memberships(pairs)
        if existing:

            def change(contact: dict[str, Any]) -> dict[str, Any] | None:
                row = existing[contact["uuid"]]
                before = dict(contact)
                if row.name:
                    contact["name"] = row.name
                if row.language:
                    contact["language"] = row.language
                if row.fields:
                    contact["fields"] = {**(contact.get("fields") or {}), **row.fields}
                groups = list(contact.get("groups") or [])
                contact["groups"] = groups + [g for g in row.groups if g not in groups]
                return None if contact == before else contact

            try:
                results = await self.store.update_contacts(list(existing), change, self.now)
            except ContactBusy as exc:
                for cid in exc.cids:
                    self.report.error(existing[cid].line, "contact_busy", "locked; import again")
                results = {}
            for cid, row in existing.items():
                if cid in results:
                    if results[cid] is None:
                        self.report.error(row.line, "unknown_contact", "deleted during import")
                    else:
                        self.report.updated += 1
            # rows whose contact had the group in its list but not in the set: repair
            await self.store.add_memberships(
                [(ids[g], c) for c, r in existing.items() if c in results for g in r.groups]
            )

    async def finish(self) -> ImportReport:
        if self.columns is None:
            raise ApiError(400, "bad_request", "the CSV is empty: it needs a header row")
        await self.flush()
        return self.report


async def csv_records(lines: AsyncIterator[str]) -> AsyncIterator[tuple[int, list[str]]]:
    """(line number, cells) of each CSV record, read line by line: a quoted cell may span
    lines (an odd count of quotes means the record goes on)."""
    pending: list[str] = []
    start = 0
    number = 0
    async for line in lines:
        number += 1
        if not pending:
            start = number
        pending.append(line)
        text = "".join(pending)
        if text.count('"') % 2:
            continue
        pending = []
        for cells in csv.reader(io.StringIO(text)):
            yield start, cells
    if pending:
        for cells in csv.reader(io.StringIO("".join(pending))):
            yield start, cells


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


async def _file_lines(path: Path) -> AsyncIterator[str]:
    with path.open(encoding="utf-8", newline="") as f:
        for n, line in enumerate(f):
            if n % IMPORT_CHUNK == 0:
                await asyncio.sleep(0)
            yield line


async def import_file(store: Store, path: Path, groups: list[str], now: float) -> int:
    """The CLI's import: prints the report; exit code 1 when a row failed, 2 on a bad file."""
    started = time.monotonic()
    try:
        importer = Importer(store, now, [_group_name(g) for g in groups])
        async for line, cells in csv_records(_file_lines(path)):
            await importer.feed(line, cells)
        report = await importer.finish()
    except (ApiError, OSError, UnicodeDecodeError) as exc:
        print(f"{path}: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 2
    for e in report.errors:
        print(f"{path}:{e['row']}: {e['code']}: {e['message']}")
    if report.failed > len(report.errors):
        print(f"... and {report.failed - len(report.errors)} more errors")
    print(
        f"{report.rows} rows: {report.created} created, {report.updated} updated, "
        f"{report.failed} failed ({time.monotonic() - started:.1f}s)"
    )
    return 1 if report.failed else 0


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


__all__ = ["ImportReport", "Importer", "csv_records", "index_member", "normalize_urn"]
