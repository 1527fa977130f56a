"""Benchmark: how fast Studio's pages answer with 100,000 contacts and 1,000 starts in Redis.

One real ``chasqui serve`` (its own embedded Valkey in a temporary directory, the shipped flows,
the WhatsApp channel on the built-in sandbox), loaded like this:

1. N contacts (default 100,000) written straight into the server's Valkey with the CSV
   importer's code (``bot.work.contacts_import.Importer``), each with a name, a WhatsApp URN,
   the fields ``order_id`` and ``city``, and one of ten groups (``G0`` … ``G9``);
2. S starts (default 1,000) made through the API, ``POST /api/v1/starts`` of the shipped
   ``order_followup`` flow, each naming P contacts (default 5) by URN: S × P runs started and
   S × P templates sent to the sandbox; every tenth start names a number the sandbox fails
   (131026), so the history has failures. The bench waits until every start completed.

Then it signs in to Studio with the admin token as a browser does (the sign-in form, its
cookie and CSRF token), walks the menu, and from each menu page follows the first link to a
page of each other shape (a start's page, a contact's page, a flow's page, …), and fetches each
page R times (default 30), one at a time: the latency is the time to the last byte. It prints
p50 and p95 per page and whether p95 is under the target (100 ms), and flags any page that
answered an error. Everything lives in a temporary directory and is stopped at the end.

Usage:  .venv/bin/python bench/pages.py [--contacts 100000] [--starts 1000] [--per-start 5]
                                        [--repeat 30] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import aiohttp  # noqa: E402
import whatsapp as wab  # noqa: E402

from bot.store import Store  # noqa: E402
from bot.work.contacts_import import Importer, file_chunks, import_csv  # noqa: E402

ADMIN = "bench-pages-admin-token"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
TARGET_MS = 100.0
FAILING = "51900000000"  # the sandbox fails every send to this number (131026)
LINK = re.compile(r'href="(/studio/[^"#?]*)"')
# A page's shape: its path with ids (uuids, numbers, names after a list's prefix) masked.
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
SKIP = ("/studio/static/", "/studio/signout", "/studio/signin")


def write_config(tmp: Path, port: int) -> Path:
    path = tmp / "config.toml"
    path.write_text(
        f"""\
[server]
host = "127.0.0.1"
port = {port}
admin_token = "{ADMIN}"

[redis]
url = ""
data_dir = "{tmp / "var"}"

[flows]
path = "{ROOT / "flows"}"

[channels.whatsapp]
type = "whatsapp"
graph_url = "sandbox"
phone_number_id = "318207746650091"
waba_id = "230918475512034"
display_phone_number = "15550142200"
access_token = "sandbox-token"
app_secret = "sandbox-app-secret"
verify_token = "sandbox-verify-token"
max_mps = 0
"""
    )
    return path


def phone(i: int) -> str:
    return f"51988{i:06d}"


def write_csv(path: Path, n: int) -> None:
    with path.open("w", encoding="utf-8") as f:
        f.write("urn,name,field:order_id,field:city,group\n")
        for i in range(n):
            city = ("Lima", "Cusco", "Arequipa")[i % 3]
            f.write(f"whatsapp:+{phone(i)},Cliente {i},A-{i},{city},G{i % 10}\n")


async def load_contacts(store: Store, tmp: Path, n: int) -> float:
    path = tmp / "contacts.csv"
    write_csv(path, n)
    started = time.perf_counter()
    report = await import_csv(Importer(store, time.time()), file_chunks(path))
    if report.failed:
        raise SystemExit(f"the import failed {report.failed} rows")
    return time.perf_counter() - started


async def make_starts(
    http: aiohttp.ClientSession, base: str, contacts: int, starts: int, per_start: int
) -> float:
    """``starts`` starts through the API, each naming ``per_start`` contacts; wait until all
    completed. Every tenth one also names the number the sandbox fails."""
    started = time.perf_counter()
    async with http.post(
        f"{base}/_sandbox/whatsapp/_fake/errors",
        json={"match": {"to": FAILING}, "code": 131026, "mode": "async", "times": None},
        headers=AUTH,
    ) as r:
        assert r.status == 200, await r.text()
    ids: list[str] = []

    async def one(k: int) -> None:
        urns = [f"whatsapp:+{phone((k * per_start + j) % contacts)}" for j in range(per_start)]
        if k % 10 == 0:
            urns.append(f"whatsapp:+{FAILING}")
        body = {"flow": "order_followup", "urns": urns, "restart_participants": True}
        async with http.post(f"{base}/api/v1/starts", json=body, headers=AUTH) as r:
            answer = await r.json()
            if r.status != 202:
                raise SystemExit(f"POST /api/v1/starts: {r.status} {answer}")
            ids.append(answer["uuid"])

    for k in range(0, starts, 20):
        await asyncio.gather(*(one(i) for i in range(k, min(starts, k + 20))))
    deadline = time.monotonic() + 600
    pending = list(ids)
    while pending and time.monotonic() < deadline:
        still = []
        for sid in pending:
            async with http.get(f"{base}/api/v1/starts/{sid}", headers=AUTH) as r:
                if (await r.json()).get("status") not in ("completed", "failed", "cancelled"):
                    still.append(sid)
        pending = still
        if pending:
            await asyncio.sleep(0.5)
    if pending:
        raise SystemExit(f"{len(pending)} starts did not complete within 600 s")
    return time.perf_counter() - started


async def sign_in(http: aiohttp.ClientSession, base: str) -> None:
    async with http.get(f"{base}/studio/signin") as r:
        html = await r.text()
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    if found is None:
        raise SystemExit("no sign-in form at /studio/signin")
    form = {"csrf": found.group(1), "token": ADMIN, "next": "/studio/"}
    async with http.post(f"{base}/studio/signin", data=form, allow_redirects=False) as r:
        if r.status != 303:
            raise SystemExit(f"sign-in failed: {r.status} {await r.text()}")


def shape(path: str) -> str:
    masked = UUID.sub("<id>", path)
    return re.sub(r"/\d[\d.-]*(?=/|$)", "/<n>", masked)


async def fetch(http: aiohttp.ClientSession, url: str) -> tuple[int, float, str]:
    started = time.perf_counter()
    async with http.get(url, allow_redirects=False) as r:
        body = await r.text()
        return r.status, time.perf_counter() - started, body


async def discover(http: aiohttp.ClientSession, base: str) -> list[str]:
    """The menu's pages, then one page of every other shape their links reach."""
    status, _, home = await fetch(http, f"{base}/studio/")
    if status != 200:
        raise SystemExit(f"/studio/ answered {status}")
    nav = re.search(r"<nav.*?</nav>", home, re.S)
    menu = list(dict.fromkeys(LINK.findall(nav.group(0) if nav else home)))
    pages = list(menu)
    seen = {shape(p) for p in pages}
    for path in menu:
        _, _, html = await fetch(http, base + path)
        for link in LINK.findall(html):
            if link.startswith(SKIP) or "/static/" in link or shape(link) in seen:
                continue
            seen.add(shape(link))
            pages.append(link)
    return [p for p in pages if not p.startswith(SKIP)]


def pct(values: list[float], q: float) -> float:
    return wab.pct(sorted(values), q) * 1000


async def measure(
    http: aiohttp.ClientSession, base: str, pages: list[str], repeat: int
) -> list[tuple[str, int, float, float]]:
    out = []
    for path in pages:
        await fetch(http, base + path)  # warm: templates compiled, connections open
        times, worst = [], 0
        for _ in range(repeat):
            status, took, _ = await fetch(http, base + path)
            times.append(took)
            worst = max(worst, status)
        out.append((path, worst, pct(times, 0.50), pct(times, 0.95)))
    return out


async def main(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="chasqui-bench-pages-"))
    port = wab.free_port()
    base = f"http://127.0.0.1:{port}"
    config = write_config(tmp, port)
    argv = [wab.PYTHON, "-m", "bot.cli", "--config", str(config), "serve"]
    server = wab.Proc("server", argv, tmp / "server.log")
    jar = aiohttp.CookieJar(unsafe=True)
    try:
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            await wab.wait_http(http, f"{base}/healthz", server, limit=60)
            redis = await wab.redis_of(tmp)
            try:
                took = await load_contacts(Store(redis), tmp, args.contacts)
                print(f"loaded {args.contacts:,} contacts in {took:.1f} s")
                took = await make_starts(http, base, args.contacts, args.starts, args.per_start)
                runs = args.starts * args.per_start
                print(f"made {args.starts:,} starts ({runs:,} runs) in {took:.1f} s")
                info = await redis.info("memory")
                print(f"Valkey used_memory: {int(info['used_memory']) / 2**20:.0f} MiB")
            finally:
                await redis.aclose()
            await sign_in(http, base)
            pages = await discover(http, base)
            print(f"\n{len(pages)} pages, each fetched {args.repeat} times, one at a time:\n")
            results = await measure(http, base, pages, args.repeat)
        print(f"{'page':<58} {'status':>6} {'p50 ms':>8} {'p95 ms':>8}")
        failed = False
        for path, status, p50, p95 in results:
            ok = "✔" if p95 < TARGET_MS and status < 400 else "✘"
            failed |= ok == "✘"
            print(f"{shape(path):<58} {status:>6} {p50:>8.1f} {p95:>8.1f} {ok}")
        print(
            f"\nmachine: {wab.cpu_model()}, {len(os.sched_getaffinity(0))} cores, "
            f"CPython {platform.python_version()}"
        )
        if failed:
            print(f"some page missed p95 < {TARGET_MS:.0f} ms or answered an error")
    finally:
        server.stop()
        with contextlib.suppress(OSError, ValueError):
            pid = int((tmp / "var" / "valkey.pid").read_text().strip())
            os.kill(pid, 15)
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--starts", type=int, default=1_000)
    parser.add_argument("--per-start", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--quick", action="store_true", help="2k contacts, 50 starts, 10 fetches")
    args = parser.parse_args(argv)
    if args.quick:
        args.contacts, args.starts, args.repeat = 2_000, 50, 10
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
