"""The CSV import of contacts: rows in, contacts out, a chunk at a time.

Apart from the HTTP handler (``POST /api/v1/contacts/import`` in ``bot/api/contacts.py``) so that
``chasqui contacts import`` (``bot/cli/contacts.py``) and the benchmarks run the same code without
the admin API. A bad file raises :class:`bot.core.errors.ApiError`, which the handler answers with.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.core.contacts import FIELD_KEY, LANGUAGE, UrnError, new_record, normalize_urn
from bot.core.errors import ApiError
from bot.store import ContactBusy, Store

IMPORT_CHUNK = 1000
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
            if c not in known and not (c.startswith("field:") and FIELD_KEY.match(c[6:])):
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
        if language and not LANGUAGE.match(language):
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
                record = new_record(u, self.now)
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


async def file_lines(path: Path) -> AsyncIterator[str]:
    """A UTF-8 file's lines, for :func:`csv_records`; lets the event loop run every chunk."""
    with path.open(encoding="utf-8", newline="") as f:
        for n, line in enumerate(f):
            if n % IMPORT_CHUNK == 0:
                await asyncio.sleep(0)
            yield line
