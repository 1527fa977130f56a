"""Benchmark: the contact search index (bot/store/search.py) at N contacts.

Starts its own embedded Valkey in a temporary directory, creates N contacts (two of forty
first names, one of forty surnames, a Peruvian mobile number, a city and a plan field) through
the store's pipelined create, then prints:

1. the index's size: members, ``MEMORY USAGE`` of its key, bytes per contact, and what the
   whole store takes per contact beside it (``used_memory`` / N);
2. searches through the service the API and Studio call (``bot.api.contacts.find``, no HTTP):
   p50 / p95 / max of a page of 50 for a common name, a rare surname prefix, two words, a
   phone number's prefix, a field value; and the same page read without the index (a name
   prefix, the old walk over all contacts) for comparison.

Usage:  .venv/bin/python bench/contact_search.py [--contacts 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.api import models as m  # noqa: E402
from bot.api.contacts import find  # noqa: E402
from bot.core.contacts import new_record  # noqa: E402
from bot.store import Store  # noqa: E402
from bot.store.embedded import EmbeddedValkey  # noqa: E402
from bot.store.keys import SEARCH  # noqa: E402
from bot.store.redisconn import connect  # noqa: E402

FIRST = [
    "Ana",
    "María",
    "José",
    "Luis",
    "Carmen",
    "Juan",
    "Rosa",
    "Pedro",
    "Lucía",
    "Jorge",
    "Elena",
    "Carlos",
    "Sofía",
    "Miguel",
    "Julia",
    "Andrés",
    "Isabel",
    "Diego",
    "Paula",
    "Raúl",
    "Teresa",
    "Javier",
    "Laura",
    "Ramón",
    "Marta",
    "Hugo",
    "Inés",
    "Pablo",
    "Clara",
    "Tomás",
    "Silvia",
    "Óscar",
    "Irene",
    "Mario",
    "Nuria",
    "Iván",
    "Lorena",
    "Sergio",
    "Alicia",
    "Víctor",
]
LAST = [
    "García",
    "Rodríguez",
    "González",
    "Fernández",
    "López",
    "Martínez",
    "Sánchez",
    "Pérez",
    "Gómez",
    "Martín",
    "Jiménez",
    "Ruiz",
    "Hernández",
    "Díaz",
    "Moreno",
    "Álvarez",
    "Muñoz",
    "Romero",
    "Alonso",
    "Gutiérrez",
    "Navarro",
    "Torres",
    "Domínguez",
    "Vázquez",
    "Ramos",
    "Gil",
    "Ramírez",
    "Serrano",
    "Blanco",
    "Suárez",
    "Molina",
    "Morales",
    "Ortega",
    "Delgado",
    "Castro",
    "Ortiz",
    "Rubio",
    "Marín",
    "Sanz",
    "Quispe",
]
CITIES = ("Lima", "Cusco", "Arequipa", "Trujillo", "Piura", "Iquitos", "Puno", "Tacna")


def record(n: int) -> tuple[str, dict[str, object]]:
    urn = f"whatsapp:+519{n:08d}"
    name = f"{FIRST[n % 40]} {FIRST[(n // 40) % 40]} {LAST[(n * 7) % 40]}"
    fields = {"city": CITIES[n % len(CITIES)], "plan": f"p{n % 3}"}
    return urn, {**new_record(urn, 1.7e9 + n), "name": name, "fields": fields}


async def timed(label: str, store: Store, query: m.ContactQuery, runs: int = 50) -> None:
    took: list[float] = []
    found = 0
    for _ in range(runs):
        started = time.perf_counter()
        page = await find(store, query)
        took.append((time.perf_counter() - started) * 1000)
        found = len(page.contacts)
    took.sort()
    p95 = took[int(len(took) * 0.95) - 1]
    print(
        f"  {label:<38} {found:>3} found  p50 {statistics.median(took):6.2f} ms  "
        f"p95 {p95:6.2f} ms  max {took[-1]:6.2f} ms"
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contacts", type=int, default=100_000)
    args = parser.parse_args()
    n = args.contacts
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedValkey(Path(tmp) / "var")
        redis = connect(await server.start())
        try:
            store = Store(redis)
            base = int((await redis.info("memory"))["used_memory"])
            started = time.perf_counter()
            for low in range(0, n, 1000):
                await store.create_contacts([record(k) for k in range(low, min(n, low + 1000))])
            took = time.perf_counter() - started
            used = int((await redis.info("memory"))["used_memory"]) - base
            members = int(await redis.zcard(SEARCH))
            index = int(await redis.memory_usage(SEARCH, samples=0) or 0)
            print(f"{n:,} contacts created in {took:.1f} s ({n / took:,.0f}/s)")
            print(
                f"search index: {members:,} members ({members / n:.1f} per contact), "
                f"{index / 2**20:.1f} MiB = {index / n:.0f} bytes per contact"
            )
            print(f"everything a contact has (record, URN index, lists): {used / n:.0f} bytes")
            print("searches, a page of 50 (bot.api.contacts.find, no HTTP):")
            for label, q in (
                ("a common first name: q=ana", "ana"),
                ("a rare surname prefix: q=quis", "quis"),
                ("two words: q=maria quispe", "maria quispe"),
                ("a number's prefix: q=+51 9000 12", "+51 9000 12"),
                ("a field value: q=iquitos", "iquitos"),
                ("nothing matches: q=zzz", "zzz"),
            ):
                await timed(label, store, m.ContactQuery(q=q))
            print("without the index (name prefix: a walk in creation order):")
            await timed("name=Víctor Víctor (last 1/1600)", store, m.ContactQuery(name="Víctor V"))
        finally:
            await redis.aclose()
            await server.stop()


if __name__ == "__main__":
    asyncio.run(main())
