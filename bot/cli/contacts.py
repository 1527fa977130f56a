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
from bot.work.contacts_import import Importer, file_chunks, import_csv


async def import_file(store: Store, path: Path, groups: list[str], now: float) -> int:
    """The CLI's import: prints the report; exit code 1 when a row failed, 2 on a bad file."""
    started = time.monotonic()
    for group in groups:
        problem = group_name_problem(group)
        if problem is not None:
            print(f"{path}: {problem}", file=sys.stderr)
            return 2
    try:
        report = await import_csv(Importer(store, now, groups), file_chunks(path))
    except ApiError as exc:
        line = (exc.details or {}).get("line")
        print(
            f"{path}:{line}: {exc.message}" if line else f"{path}: {exc.message}", file=sys.stderr
        )
        return 2
    except OSError as exc:
        print(f"{path}: {exc}", file=sys.stderr)
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
