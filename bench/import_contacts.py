"""Benchmark: CSV import of contacts (the importer ``chasqui contacts import`` runs).

Writes a CSV of N rows (valid Brazilian mobile numbers, a name, a language, two fields, one of
ten groups) into a temporary directory, starts its own embedded Valkey there, imports the file
(streamed, chunks of 1,000 rows, pipelined), then imports it again (every row an update), and
prints rows/s, this process's peak RSS and Redis memory.

Usage:  .venv/bin/python bench/import_contacts.py [--rows 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.store import Store  # noqa: E402
from bot.store.embedded import EmbeddedValkey  # noqa: E402
from bot.store.redisconn import connect  # noqa: E402
from bot.work.contacts_import import Importer, file_chunks, import_csv  # noqa: E402


def write_csv(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8") as f:
        f.write("phone,name,language,field:city,field:plan,group\n")
        for n in range(rows):
            f.write(f"+55119{n:08d},Cliente {n},pt,São Paulo,p{n % 3},G{n % 10}\n")


async def run_import(store: Store, path: Path) -> tuple[float, dict[str, int]]:
    started = time.perf_counter()
    report = await import_csv(Importer(store, time.time()), file_chunks(path))
    took = time.perf_counter() - started
    return took, {"created": report.created, "updated": report.updated, "failed": report.failed}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = Path(tmp) / "contacts.csv"
        write_csv(csv_path, args.rows)
        server = EmbeddedValkey(Path(tmp) / "var")
        url = await server.start()
        redis = connect(url)
        try:
            store = Store(redis)
            for label in ("first import (creates)", "re-import (updates)"):
                cpu = _cpu()
                took, counts = await run_import(store, csv_path)
                rate = args.rows / took
                print(f"{label}: {args.rows} rows in {took:.1f}s = {rate:,.0f} rows/s {counts}")
                print(f"  CPU of this process (not Redis's): {_cpu() - cpu:.1f}s")
            info = await redis.info("memory")
            print(f"Redis used_memory: {int(info['used_memory']) / 2**20:.0f} MiB")
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"peak RSS of this process: {rss:.0f} MiB")
        finally:
            await redis.aclose()
            await server.stop()


if __name__ == "__main__":
    asyncio.run(main())
