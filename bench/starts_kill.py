"""Reliability: kill -9 the server in the middle of a start to N contacts, start it again.

What must hold (issue "Send flow"): the start completes, every targeted contact gets exactly one
run, and duplicate sends are at most the sends that were in flight at the kill. This script
measures it end to end, over real HTTP and real processes on loopback:

- a sandbox in its own process (`chasqui sandbox`, rate limit and statuses off, keeping every
  send record), a `chasqui serve` with its own embedded Valkey (which, by design, survives the
  server: it runs in its own session);
- N contacts imported into a group (CSV import API), a start of a flow that sends the approved
  template once;
- when about a third of the sends are done: SIGKILL to the server's whole process group; then a
  new server on the same data. Work the dead process held is taken over once its locks expire
  and its stream entries have been idle long enough (about 65 s with the default lock TTL);
- then, from the sandbox's own records (the ground truth of what reached "Meta"): sends per
  recipient, duplicates; from Redis: runs per contact.

Usage:  .venv/bin/python bench/starts_kill.py [--contacts 20000] [--kill-at 0.33]
Exits 1 (after saying which) when a promise does not hold.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import signal
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

from bot.store.keys import contact_key  # noqa: E402
from bot.store.redisconn import connect  # noqa: E402

RUNS = contact_key("*", "runs")  # every contact's list of run ids
AUTH = {"Authorization": f"Bearer {wab.ADMIN}"}
IN_FLIGHT = 2 * 100  # sends one process may have under way: 2 send loops x batch 100


async def api(
    http: aiohttp.ClientSession, setup: wab.Setup, method: str, path: str, **kwargs: Any
) -> Any:
    headers = {**AUTH, **kwargs.pop("headers", {})}
    async with http.request(method, setup.server + path, headers=headers, **kwargs) as response:
        body = await response.json()
        if response.status >= 400:
            raise SystemExit(f"{method} {path}: {response.status} {body}")
        return body


async def sandbox_records(http: aiohttp.ClientSession, setup: wab.Setup) -> list[dict[str, Any]]:
    async with http.get(f"{setup.sandbox}/_fake/sent", headers=AUTH) as response:
        data: list[dict[str, Any]] = (await response.json())["data"]
        return data


async def main(args: argparse.Namespace) -> bool:
    """Run it; whether every promise held (the exit code says so too)."""
    n = args.contacts
    tmp = Path(tempfile.mkdtemp(prefix="chqkill"))
    setup = wab.Setup(tmp, wab.free_port(), wab.free_port())
    async with aiohttp.ClientSession() as http:
        try:
            argv = [
                wab.PYTHON,
                "-m",
                "bot.cli",
                "sandbox",
                "--port",
                str(setup.sandbox_port),
                "--webhook-url",
                setup.webhook_url,
                "--max-mps",
                "0",
                "--no-pair-rate",
                "--no-statuses",
                "--record-limit",
                str(4 * n),
                "--admin-token",
                wab.ADMIN,
            ]
            setup.procs["sandbox"] = proc = wab.Proc("sandbox", argv, tmp / "sandbox.log")
            await wab.wait_http(http, f"{setup.sandbox}/_fake/clock", proc)
            await setup.start_server(http, max_mps=0)
            print(f"importing {n:,} contacts into group 'kill' ...", flush=True)
            rows = ["urn,name,field:order_id,group"]
            rows += [f"whatsapp:+5511977{i:06d},Ana {i},A-{i:06d},kill" for i in range(n)]
            report = await api(
                http,
                setup,
                "POST",
                "/api/v1/contacts/import",
                data="\n".join(rows).encode(),
                headers={"Content-Type": "text/csv"},
            )
            print(f"  {report.get('created', report)} created")
            start = await api(
                http, setup, "POST", "/api/v1/starts", json={"flow": "tpl", "groups": ["kill"]}
            )
            sid = start["uuid"]
            t0 = time.monotonic()
            while True:  # until about kill_at of the sends were accepted by the sandbox
                sent = len(await sandbox_records(http, setup))
                if sent >= n * args.kill_at:
                    break
                await asyncio.sleep(0.05)
            server = setup.procs.pop("server")
            os.killpg(server.p.pid, signal.SIGKILL)
            server.p.wait(10)
            at_kill = len(await sandbox_records(http, setup))
            await asyncio.sleep(0.5)
            after_kill = len(await sandbox_records(http, setup))
            print(
                f"kill -9 after {time.monotonic() - t0:.1f} s: the sandbox had {at_kill:,} "
                f"sends ({after_kill - at_kill} more arrived after the kill)",
                flush=True,
            )
            t1 = time.monotonic()
            await setup.start_server(http, max_mps=0)
            print("restarted; waiting for the start to complete ...", flush=True)
            deadline = time.monotonic() + args.limit
            while True:
                state = await api(http, setup, "GET", f"/api/v1/starts/{sid}")
                if (
                    state["status"] in ("completed", "failed", "cancelled")
                    and state["messages"]["sent"] + state["messages"]["failed"]
                    >= state["counts"]["started"]
                ):
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"not done after {args.limit}s: {state}")
                await asyncio.sleep(0.5)
            recovered = time.monotonic() - t1
            records = await sandbox_records(http, setup)
            per_recipient = collections.Counter(
                str(r["body"].get("to")) for r in records if isinstance(r.get("body"), dict)
            )
            duplicates = sum(c - 1 for c in per_recipient.values() if c > 1)
            redis = connect((tmp / "var" / "valkey.url").read_text().strip())
            try:
                # runs per contact: every contact that has any run list
                run_lists = [k.decode() async for k in redis.scan_iter(match=RUNS, count=5000)]
                async with redis.pipeline(transaction=False) as pipe:
                    for key in run_lists:
                        pipe.llen(key)
                    lengths = await pipe.execute()
            finally:
                await redis.aclose()
            runs = collections.Counter(lengths)
            print()
            print(f"start {sid}: {state['status']}, counts {state['counts']}")
            print(f"  contacts targeted {n:,}; recovery after restart {recovered:.1f} s")
            print(
                f"  runs per contact: {dict(runs)}  (every contact exactly one: "
                f"{'yes' if set(runs) == {1} and sum(runs.values()) == n else 'NO'})"
            )
            print(
                f"  sends reaching the sandbox: {len(records):,} for {len(per_recipient):,} "
                f"recipients; duplicates {duplicates} (in flight at the kill: at most "
                f"the sends one process had under way, batch 100 x 2 loops)"
            )
            broken = []
            if state["status"] != "completed":
                broken.append(f"the start ended {state['status']}, not completed")
            if set(runs) != {1} or sum(runs.values()) != n:
                broken.append(f"runs per contact {dict(runs)}, not exactly one for each of {n}")
            if len(per_recipient) != n:
                broken.append(f"{len(per_recipient)} recipients reached, not {n}")
            if duplicates > IN_FLIGHT:
                broken.append(f"{duplicates} duplicate sends, more than {IN_FLIGHT} in flight")
            for problem in broken:
                print(f"FAILED: {problem}", file=sys.stderr)
            return not broken
        finally:
            setup.stop_all()


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--contacts", type=int, default=20_000)
    p.add_argument("--kill-at", type=float, default=0.33, help="share of sends before the kill")
    p.add_argument("--limit", type=float, default=300, help="seconds to wait for recovery")
    return p.parse_args()


if __name__ == "__main__":
    sys.exit(0 if asyncio.run(main(parse_args())) else 1)
