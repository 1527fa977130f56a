"""The CSV import of contacts: rows in, contacts out, a chunk at a time.

Apart from the HTTP handler (``POST /api/v1/contacts/import`` in ``bot/api/contacts.py``) so that
``chasqui contacts import`` (``bot/cli/contacts.py``) and the benchmarks run the same code without
the admin API. A bad file raises :class:`bot.core.errors.ApiError`, which the handler answers with;
reading the bytes (encoding, delimiter, quotes, line limits) is :mod:`bot.work.csvread`.
"""

from __future__ import annotations

import asyncio
from array import array
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.core.contacts import (
    FIELD_KEY,
    LANGUAGE,
    SCHEMES,
    UrnError,
    name_problem,
    new_record,
    normalize_urn,
    urns_problem,
)
from bot.core.errors import ApiError
from bot.store import ContactBusy, Store
from bot.work.csvread import CsvReader, CsvRefused

IMPORT_CHUNK = 1000
READ_CHUNK = 64 * 1024  # bytes read at a time from a file (an HTTP body comes as it comes)
MAX_ERRORS_LISTED = 1000


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

    def counts(self) -> dict[str, int]:
        return {
            "rows": self.rows,
            "created": self.created,
            "updated": self.updated,
            "failed": self.failed,
        }

    def as_json(self) -> dict[str, Any]:
        return {
            **self.counts(),
            "errors": self.errors,
            "errors_truncated": self.failed > len(self.errors),
        }


class FirstLines:
    """Which line each URN of a file was first seen on, in little memory: an open-addressing
    table of (URN hash, line) in two flat arrays, at most half full -- 24-48 bytes a URN (a
    million rows: ~32 MB), where a dict of ints takes ~105 bytes and a set of the URNs more.
    Two URNs with the same 64-bit hash would be taken for one (odds ~1e-8 in a million rows)."""

    def __init__(self) -> None:
        self._keys = array("q", bytes(8 * 1024))  # 0: an empty slot
        self._lines = array("i", bytes(4 * 1024))
        self._used = 0

    def first(self, urn: str, line: int) -> int:
        """The line ``urn`` was first seen on: ``line`` itself the first time."""
        key = hash(urn) or 1
        keys, mask = self._keys, len(self._keys) - 1
        i = key & mask
        while keys[i]:
            if keys[i] == key:
                return self._lines[i]
            i = (i + 1) & mask
        keys[i], self._lines[i] = key, line
        self._used += 1
        if 2 * self._used > len(keys):
            self._grow()
        return line

    def _grow(self) -> None:
        old = zip(self._keys, self._lines, strict=True)
        size = 2 * len(self._keys)
        self._keys, self._lines = array("q", bytes(8 * size)), array("i", bytes(4 * size))
        keys, lines, mask = self._keys, self._lines, size - 1
        for key, line in old:
            if key:
                i = key & mask
                while keys[i]:
                    i = (i + 1) & mask
                keys[i], lines[i] = key, line


@dataclass
class _Row:
    line: int
    urn: str
    name: str | None
    language: str | None
    fields: dict[str, str]
    groups: list[str]
    others: list[str] = field(default_factory=list)  # more URNs of the contact (urn:<scheme>)


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
        # a later row with the URN of an earlier one is reported, not applied over it
        self._first_lines = FirstLines()

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
            if c in known or (c.startswith("field:") and FIELD_KEY.match(c[6:])):
                continue
            if not (c.startswith("urn:") and c[4:] in SCHEMES):
                raise ApiError(
                    400,
                    "bad_request",
                    f"unknown column {c!r}: use urn, phone, urn:<scheme>, name, language, "
                    "group(s), field:<key>",
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
        others: list[str] = []
        for column, cell in values.items():
            if column.startswith("urn:") and cell:
                scheme = column[4:]
                given = cell if cell.lower().startswith(scheme + ":") else f"{scheme}:{cell}"
                try:
                    others.append(normalize_urn(given))
                except UrnError as exc:
                    self.report.error(line, "invalid_urn", f"{column}: {exc}")
                    return None
        others = [u for u in dict.fromkeys(others) if u != urn]
        problem = urns_problem([urn, *others])
        if problem is not None:
            self.report.error(line, "invalid_urn", problem)
            return None
        first = self._first_lines.first(urn, line)
        if first != line:
            self.report.error(
                line, "duplicate_urn", f"the same URN as line {first}: only that row is imported"
            )
            return None
        language = values.get("language")
        if language and not LANGUAGE.match(language):
            self.report.error(line, "bad_row", f"language {language!r} is not a code like es")
            return None
        groups = list(self.default_groups)
        for cell in (values.get("group") or "", values.get("groups") or ""):
            groups += [g.strip() for g in cell.split(";") if g.strip()]
        if any(len(g) > 64 for g in groups):
            self.report.error(line, "bad_row", "a group name is at most 64 characters")
            return None
        problem = next(filter(None, map(name_problem, [values.get("name") or "", *groups])), None)
        if problem:
            self.report.error(line, "bad_row", problem)
            return None
        fields = {k[6:]: v for k, v in values.items() if k.startswith("field:") and v}
        return _Row(
            line,
            urn,
            values.get("name") or None,
            language or None,
            fields,
            list(dict.fromkeys(groups)),
            others,
        )

    async def flush(self) -> None:
        rows, self._chunk = self._chunk, []
        if not rows:
            return
        by_urn = {row.urn: row for row in rows}  # one row per URN: later ones were refused
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
                record = new_record(u, self.now)
                record.update(name=r.name or "", fields=r.fields, groups=r.groups)
                record["urns"] = [u, *r.others]
                if r.language:
                    record["language"] = r.language
                records.append((u, record))
            made = await self.store.create_contacts(records)
            pairs = []
            for (u, record), (cid, created) in zip(records, made, strict=True):
                if created and cid == record["uuid"]:
                    self.report.created += 1
                    pairs += [(ids[g], cid) for g in by_urn[u].groups]
                elif by_urn[u].others and not await self._owns(cid, u):
                    # another of the row's URNs is another contact's
                    self._urn_in_use(by_urn[u], cid)
                else:  # created meanwhile by someone else, or an index repaired: update it
                    existing[cid] = by_urn[u]
            await self.store.add_memberships(pairs)
        for cid, row in list(existing.items()):  # more URNs for known contacts: indexed first
            taken = await self.store.claim_urns(cid, row.others) if row.others else None
            if taken is not None:
                del existing[cid]
                self._urn_in_use(row, taken[1], taken[0])
        lost: dict[str, list[str]] = {}
        if existing:

            def change(contact: dict[str, Any]) -> dict[str, Any] | None:
                row = existing[contact["uuid"]]
                before = dict(contact)
                if row.others:  # a row's URN of a scheme replaces the contact's
                    schemes = {u.split(":", 1)[0] for u in row.others}
                    urns = list(contact.get("urns") or [])
                    lost[contact["uuid"]] = [u for u in urns if u.split(":", 1)[0] in schemes]
                    kept = [u for u in urns if u not in lost[contact["uuid"]]]
                    contact["urns"] = kept + row.others
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
            for cid, urns in lost.items():  # the URNs a written row replaced
                if results.get(cid) is not None:
                    gone = [u for u in urns if u not in existing[cid].others]
                    await self.store.release_urns(cid, gone)
            # rows whose contact had the group in its list but not in the set: repair
            await self.store.add_memberships(
                [(ids[g], c) for c, r in existing.items() if c in results for g in r.groups]
            )

    async def _owns(self, cid: str, urn: str) -> bool:
        return await self.store.contact_id_for_urn(urn) == cid

    def _urn_in_use(self, row: _Row, owner: str, urn: str | None = None) -> None:
        which = urn or "one of its URNs"
        self.report.error(row.line, "urn_in_use", f"{which} is the URN of contact {owner}")

    async def finish(self) -> ImportReport:
        if self.columns is None:
            raise ApiError(400, "bad_request", "the CSV is empty: it needs a header row")
        await self.flush()
        return self.report

    def refusal(self, refused: CsvRefused) -> ApiError:
        """The 400 for a file that cannot be read on, with what was imported before it."""
        done = self.report
        message = refused.message
        if done.rows:
            rows, were = ("rows", "were") if done.rows != 1 else ("row", "was")
            message += (
                f"; the {done.rows:,} {rows} before it {were} imported"
                f" ({done.created:,} created, {done.updated:,} updated, {done.failed:,} failed):"
                " importing the corrected file again updates them, it does not duplicate them"
            )
        return ApiError(
            400, "bad_request", message, {"line": refused.line, "imported": done.counts()}
        )


async def import_csv(importer: Importer, chunks: AsyncIterator[bytes]) -> ImportReport:
    """Read a CSV's bytes into ``importer``, a chunk at a time. A file that cannot be read on
    (see :mod:`bot.work.csvread`) is refused at once with a 400 naming the line, after the rows
    before it were written (and counted in the answer)."""
    reader = CsvReader()
    try:
        async for data in chunks:
            for line, cells in reader.feed(data):
                await importer.feed(line, cells)
            await asyncio.sleep(0)  # a body already buffered would otherwise hold the loop
        for line, cells in reader.end():
            await importer.feed(line, cells)
    except CsvRefused as refused:
        if importer.columns is not None:
            await importer.flush()
        raise importer.refusal(refused) from None
    return await importer.finish()


async def file_chunks(path: Path) -> AsyncIterator[bytes]:
    """A file's bytes, for :func:`import_csv`."""
    with path.open("rb") as f:
        while data := f.read(READ_CHUNK):
            yield data
