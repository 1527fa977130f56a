"""Benchmark: a start to a group of N contacts, over real HTTP, with a real ``chasqui serve``.

Processes (all on loopback, all in a temporary directory; the helpers come from
``bench/whatsapp.py``):
- ``python -m bot.cli --config <tmp>/config.toml serve`` with its own embedded Valkey in
  <tmp>/var and one flow, ``tpl``: set the channel, send the approved ``order_delivered``
  template (body params ``@contact.first_name`` and ``@fields.order_id``), end;
- ``python -m bot.cli sandbox --port P --max-mps 0 --no-pair-rate --no-statuses``, the Graph API
  of the server's WhatsApp channel.

N contacts are written straight into the server's Valkey with the CSV importer's code
(``bot.work.contacts_import.Importer``: pipelined, 1,000 rows a chunk) into the group
``bench``; then:

1. rate limit off: ``POST /api/v1/starts {"flow": "tpl", "groups": ["bench"]}``; the 202's
   latency; seconds until ``GET /api/v1/starts/<uuid>`` shows ``completed`` and
   ``messages.sent == N`` (polled every 0.1 s); sends/s = N / those seconds; the server's peak RSS
   (VmHWM of its process, and the largest VmRSS sampled every 0.2 s); Valkey ``used_memory``;
2. the server restarted with ``max_mps = 80``: a start to a group of ~1,000 new contacts; the rate
   measured from the sandbox's ``/_fake/sent`` ``at`` times (first to last send).

Usage:  .venv/bin/python bench/starts.py [--contacts 100000] [--mps-contacts 1000] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import aiohttp  # noqa: E402
import whatsapp as wab  # noqa: E402
from redis.asyncio import Redis  # noqa: E402

from bot.store import Store  # noqa: E402
from bot.work.contacts_import import Importer  # noqa: E402

AUTH = {"Authorization": f"Bearer {wab.ADMIN}"}
MIB = 2**20


async def api(
    http: aiohttp.ClientSession, setup: wab.Setup, method: str, path: str, **kwargs: Any
) -> tuple[int, Any]:
    async with http.request(method, setup.server + path, headers=AUTH, **kwargs) as response:
        body = await response.json()
        if response.status >= 400:
            raise SystemExit(f"{method} {path}: {response.status} {body}")
        return response.status, body


async def start_sandbox(http: aiohttp.ClientSession, setup: wab.Setup, records: int) -> None:
    argv = [wab.PYTHON, "-m", "bot.cli", "sandbox", "--port", str(setup.sandbox_port)]
    argv += ["--webhook-url", setup.webhook_url, "--max-mps", "0", "--no-pair-rate"]
    argv += ["--no-statuses", "--record-limit", str(records), "--admin-token", wab.ADMIN]
    setup.procs["sandbox"] = proc = wab.Proc("sandbox", argv, setup.tmp / "sandbox.log")
    await wab.wait_http(http, f"{setup.sandbox}/_fake/clock", proc)


async def import_group(redis: Redis, group: str, prefix: str, n: int) -> float:
    """n contacts (name, order_id) in ``group``, by the importer's code; seconds taken."""
    t0 = time.monotonic()
    importer = Importer(Store(redis), time.time())
    await importer.feed(1, ["urn", "name", "field:order_id", "group"])
    for i in range(n):
        urn = f"whatsapp:+55119{prefix}{i:07d}"
        await importer.feed(i + 2, [urn, f"Ana Souza {i}", f"A-{i:06d}", group])
    report = await importer.finish()
    if report.created != n:
        raise SystemExit(f"import of {group}: {report.created} created, {report.errors[:3]}")
    return time.monotonic() - t0


def proc_status(pid: int, key: str) -> int:
    """A kB field of /proc/<pid>/status, in bytes (0 if the process is gone)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


async def sample_rss(pid: int, peak: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], proc_status(pid, "VmRSS"))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)


async def run_start(
    http: aiohttp.ClientSession, setup: wab.Setup, group: str, n: int, limit: float
) -> dict[str, Any]:
    """POST a start to ``group``; poll it until completed with n sends."""
    t0 = time.monotonic()
    wall0 = time.time()
    status, body = await api(
        http, setup, "POST", "/api/v1/starts", json={"flow": "tpl", "groups": [group]}
    )
    accepted = time.monotonic() - t0
    if status != 202:
        raise SystemExit(f"POST /api/v1/starts answered {status}: {body}")
    sid = body["uuid"]
    deadline = t0 + limit
    while True:
        _, state = await api(http, setup, "GET", f"/api/v1/starts/{sid}")
        msgs = state["messages"]
        if state["status"] in ("failed", "cancelled") or msgs["failed"]:
            raise SystemExit(f"start {sid} went wrong: {state}")
        if state["status"] == "completed" and msgs["sent"] >= n:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"start not done after {limit:.0f}s: {state}")
        await asyncio.sleep(0.1)
    seconds = time.monotonic() - t0
    if state["counts"]["started"] != n or msgs["sent"] != n:
        raise SystemExit(f"expected {n} started and sent: {state}")
    return {"sid": sid, "accepted": accepted, "seconds": seconds, "wall0": wall0, "state": state}


async def main(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="chqs", dir="/tmp"))
    setup = wab.Setup(tmp, wab.free_port(), wab.free_port())
    redis: Redis | None = None
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            await start_sandbox(http, setup, max(2000, 2 * args.mps_contacts))
            await setup.start_server(http, max_mps=0)
            redis = await wab.redis_of(tmp)
            info = await redis.info("server")
            print("machine")
            print(f"  CPU       {wab.cpu_model()} x {os.cpu_count()} cores")
            print(f"  Python    {platform.python_version()} ({platform.python_implementation()})")
            print(f"  Valkey    {info.get('valkey_version') or info.get('redis_version')}")
            print(f"  tmp       {tmp}")

            n = args.contacts
            print(f"\nimporting {n:,} contacts into group 'bench' ...", flush=True)
            took = await import_group(redis, "bench", "1", n)
            print(f"  {took:.1f} s ({n / took:,.0f} rows/s)")
            mem0 = int((await redis.info("memory"))["used_memory"])

            pid = setup.procs["server"].p.pid
            peak = [proc_status(pid, "VmRSS")]
            rss_before = peak[0]
            stop = asyncio.Event()
            sampler = asyncio.create_task(sample_rss(pid, peak, stop))
            print(f"\n1. start to {n:,} contacts, rate limit off ...", flush=True)
            try:
                res = await run_start(http, setup, "bench", n, args.limit)
            finally:
                stop.set()
                await sampler
            hwm = proc_status(pid, "VmHWM")
            mem1 = int((await redis.info("memory"))["used_memory"])
            rate = n / res["seconds"]
            print(f"  202 latency          {res['accepted'] * 1000:.1f} ms")
            print(f"  POST -> all {n:,} sent  {res['seconds']:.1f} s")
            print(f"  sustained            {rate:,.0f} sends/s")
            print(
                f"  server RSS           before {rss_before / MIB:.0f} MiB, peak sampled "
                f"{peak[0] / MIB:.0f} MiB, VmHWM {hwm / MIB:.0f} MiB (since the server started)"
            )
            print(
                f"  Valkey used_memory   {mem0 / MIB:.0f} MiB before the start, "
                f"{mem1 / MIB:.0f} MiB after"
            )
            print(f"  counts               {res['state']['counts']}")

            m = args.mps_contacts
            print(f"\n2. max_mps = 80: start to {m:,} contacts (server restarted) ...", flush=True)
            await redis.aclose()
            redis = None
            setup.stop("server")
            await setup.start_server(http, max_mps=80)
            redis = await wab.redis_of(tmp)
            await import_group(redis, "mps", "2", m)
            limited = await run_start(http, setup, "mps", m, max(120.0, m / 40))
            sent = await wab.sandbox_sent(http, setup)
            at = sorted(
                r["at"]
                for r in sent
                if r["at"] >= limited["wall0"] - 1
                and r.get("http_status") == 200
                and isinstance(r.get("body"), dict)
                and r["body"].get("type") == "template"
            )
            if len(at) != m:
                raise SystemExit(f"the sandbox recorded {len(at)} of {m} sends: {sent[-1:]}")
            span = at[-1] - at[0]
            measured = (len(at) - 1) / span
            print(
                f"  {measured:.1f} sends/s at the sandbox over {span:.1f} s ({len(at)} sends); "
                f"POST -> all sent {limited['seconds']:.1f} s; deviation from 80: "
                f"{(measured / 80 - 1) * 100:+.1f} %"
            )

            print("\nsummary")
            print(f"  sends/s sustained (target >= 1,000):  {rate:,.0f}")
            print(f"  202 latency:                          {res['accepted'] * 1000:.1f} ms")
            print(f"  server peak RSS (target < 300 MB):    {max(hwm, peak[0]) / MIB:.0f} MiB")
            print(f"  Valkey used_memory after:             {mem1 / MIB:.0f} MiB")
            print(f"  rate at max_mps = 80 (within 5 %):    {measured:.1f}/s")
    finally:
        if redis is not None:
            await redis.aclose()
        setup.stop_all()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--contacts", type=int, default=100_000, help="group size, rate limit off")
    p.add_argument("--mps-contacts", type=int, default=1000, help="group size at max_mps = 80")
    p.add_argument("--limit", type=float, default=600, help="seconds to wait for the big start")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    p.add_argument("--quick", action="store_true", help="5,000 contacts")
    args = p.parse_args(argv)
    if args.quick:
        args.contacts = 5000
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
