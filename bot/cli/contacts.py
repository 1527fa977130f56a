"""``chasqui contacts import``: a CSV file straight into Redis, and its report printed.

The import itself is :mod:`bot.work.contacts_import`, shared with the admin API; this module is only
the terminal side of it (what is printed, and the exit code).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from bot.core.contacts import group_name_problem
from bot.core.errors import ApiError
from bot.store import Store
from bot.work.contacts_import import Importer, csv_records, file_lines


async def import_file(store: Store, path: Path, groups: list[str], now: float) -> int:
    """The CLI's import: prints the report; exit code 1 when a row failed, 2 on a bad file."""
    started = time.monotonic()
    for group in groups:
        problem = group_name_problem(group)
        if problem is not None:
            print(f"{path}: {problem}", file=sys.stderr)
            return 2
    try:
        importer = Importer(store, now, groups)
        async for line, cells in csv_records(file_lines(path)):
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
