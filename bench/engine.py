"""Benchmark: the engine + Redis, in one process, without HTTP.

Runs its own embedded Valkey (unix socket) in a temporary directory and drives the real
``Worker.process`` / ``Worker.send`` on the ``order_followup`` flow shipped in ``flows/``.

Prints:
1. contacts taken from ``start`` to their first wait, per second (events stage alone, send stage
   alone, and both running concurrently as in ``chasqui serve``);
2. replies per second (a reply that misses every case: "other" -> send -> wait again; and a reply
   that matches a case: -> send -> run completed);
3. Redis bytes per waiting session (INFO used_memory delta / N, plus MEMORY USAGE per key kind);
4. this process's RSS with 1k, 10k and N waiting contacts (after gc) and the ratio.

Usage:  .venv/bin/python bench/engine.py [--contacts 100000] [--quick] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from redis.asyncio import Redis  # noqa: E402

from bot.core.clock import Clock  # noqa: E402
from bot.core.config import ChannelConfig  # noqa: E402
from bot.engine.flows import FlowRegistry  # noqa: E402
from bot.engine.sprint import Limits  # noqa: E402
from bot.store import Store, dumps  # noqa: E402
from bot.store.embedded import EmbeddedValkey  # noqa: E402
from bot.store.keys import READY, SENDQ, TIMERS, contact_key, urn_key  # noqa: E402
from bot.store.redisconn import connect  # noqa: E402
from bot.work.host import StoreHost, route_of  # noqa: E402
from bot.work.worker import Worker, WorkerSettings  # noqa: E402
from channels.protocol import Capabilities, Channel, SendResult  # noqa: E402
from channels.whatsapp import WhatsAppChannel  # noqa: E402

FLOW = "order_followup"
SCHEME = "whatsapp"
CHANNEL = "whatsapp"
SETUP_CHUNK = 1000  # contacts written per pipeline while setting up (keeps our own RSS flat)


class NullChannel(Channel):
    """Accepts every message at once: measures our send path, not a provider's latency."""

    TYPE = "null"
    CAPABILITIES = Capabilities(schemes=(SCHEME,))

    async def send(self, message: dict[str, Any]) -> SendResult:
        return SendResult(ok=True, external_id=message["uuid"])


# -- the machine -------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def mib(n: float) -> str:
    return f"{n / 1048576:.1f} MiB"


# -- contacts, generated from an index so that we never hold N of anything -------------------------
def cid_of(prefix: str, i: int) -> str:
    return f"{prefix}-0000-4000-8000-{i:012d}"


def contact_record(cid: str, i: int, now: float) -> dict[str, Any]:
    return {
        "uuid": cid,
        "name": f"Ana Souza {i}",
        "urns": [f"{SCHEME}:+55119{i:08d}"],
        "fields": {"order_id": f"A-{i:06d}"},
        "groups": [],
        "status": "active",
        "created_on": now,
    }


class Bench:
    def __init__(self, redis: Redis, args: argparse.Namespace) -> None:
        self.redis = redis
        self.args = args
        self.store = Store(redis)
        # as in production: the flow sets the channel to "whatsapp", a 24-hour-window route
        routes = [route_of(CHANNEL, WhatsAppChannel.CAPABILITIES)]  # window, templates
        self.registry = FlowRegistry(ROOT / "flows", routes, Limits())
        report = self.registry.reload()
        if FLOW not in self.registry.flows:
            raise SystemExit(f"flow {FLOW!r} did not load: {report.problems}")
        self.clock = Clock()
        channel = NullChannel(CHANNEL, ChannelConfig(type="console"), StoreHost(self.store))
        # the stages are timed apart: sends go through the send stream, not inline
        settings = WorkerSettings(batch=args.batch, inline_sends=0)
        self.worker = Worker(
            self.store, lambda: self.registry.engine, {CHANNEL: channel}, self.clock, settings
        )

    async def reset(self) -> None:
        await self.redis.flushall()
        await self.store.setup()

    async def create(self, prefix: str, start: int, stop: int) -> None:
        """Contacts start..stop-1 (record + URN index), as ``contact_for_urn`` writes them."""
        now = self.clock.now()
        for lo in range(start, stop, SETUP_CHUNK):
            async with self.redis.pipeline(transaction=False) as pipe:
                for i in range(lo, min(lo + SETUP_CHUNK, stop)):
                    cid = cid_of(prefix, i)
                    record = contact_record(cid, i, now)
                    pipe.set(urn_key(record["urns"][0]), cid)
                    pipe.set(contact_key(cid, "contact"), dumps(record))
                await pipe.execute()

    async def enqueue(self, prefix: str, start: int, stop: int, event: dict[str, Any]) -> float:
        """Queue ``event`` for contacts start..stop-1 through the real enqueue script."""
        script = self.store._script("enqueue")
        t0 = time.perf_counter()
        for lo in range(start, stop, SETUP_CHUNK):
            async with self.redis.pipeline(transaction=False) as pipe:
                for i in range(lo, min(lo + SETUP_CHUNK, stop)):
                    cid = cid_of(prefix, i)
                    payload = dumps({**event, "at": self.clock.now()})
                    await script(
                        keys=[contact_key(cid, "q"), READY], args=[payload, cid], client=pipe
                    )
                await pipe.execute()
        return time.perf_counter() - t0

    # -- draining the streams -------------------------------------------------------------------
    async def drain_events(self) -> int:
        async def loop(k: int) -> int:
            n = 0
            while entries := await self.store.read_ready(f"bench:{k}", self.args.batch, None):
                await self.worker.process(entries)
                n += len(entries)
            return n

        return sum(await asyncio.gather(*(loop(k) for k in range(self.args.consumers))))

    async def drain_sends(self, events_done: asyncio.Event | None = None) -> int:
        async def loop(k: int) -> int:
            n = 0
            while True:
                block = None if events_done is None or events_done.is_set() else 5
                entries = await self.store.read_sendq(f"bench:s{k}", self.args.batch, block)
                if entries:
                    await self.worker.send(entries)
                    n += len(entries)
                elif events_done is None or events_done.is_set():
                    return n

        return sum(await asyncio.gather(*(loop(k) for k in range(self.args.consumers))))

    async def drain_both(self) -> tuple[int, int]:
        done = asyncio.Event()

        async def events() -> int:
            try:
                return await self.drain_events()
            finally:
                done.set()

        n_events, n_sends = await asyncio.gather(events(), self.drain_sends(done))
        return n_events, n_sends

    # -- checks: a benchmark of wrong work is worthless ------------------------------------------
    async def check(self, prefix: str, n: int, *, waiting: bool, msgs: int) -> None:
        assert await self.redis.xlen(READY) == 0, "events left unprocessed"
        assert await self.redis.xlen(SENDQ) == 0, "sends left unprocessed"
        for i in range(0, n, max(1, n // 50)):
            cid = cid_of(prefix, i)
            session = json.loads(await self.store.session_raw(cid) or b"{}")
            assert bool(session.get("wait")) == waiting, (cid, session)
            messages = await self.store.messages(cid)
            assert len(messages) == msgs, (cid, messages)
            assert all(m["status"] in ("sent", "handled") for m in messages), messages
            assert await self.redis.llen(contact_key(cid, "outbox")) == 0
            assert await self.redis.llen(contact_key(cid, "q")) == 0
        if waiting:
            assert await self.redis.zcard(TIMERS) >= n  # one timer per wait

    async def used_memory(self) -> int:
        info = await self.redis.info("memory")
        return int(info["used_memory"])


# -- phases -------------------------------------------------------------------------------------
START = {"type": "start", "flow": FLOW, "params": {"source": "bench"}}
# other -> ask_again -> wait; case -> thanks + ask_rating -> wait; rating -> rated -> completed
REPLY_OTHER = {"type": "reply", "text": "quizás mañana", "channel": CHANNEL}
REPLY_CASE = {"type": "reply", "text": "Sí, recibido", "channel": CHANNEL}
REPLY_RATE = {"type": "reply", "text": "5", "channel": CHANNEL}


async def timed(fn: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    result = await fn()
    return time.perf_counter() - t0, result


async def throughput(bench: Bench, n: int, reps: int) -> dict[str, list[float]]:
    rates: dict[str, list[float]] = {}

    def add(name: str, count: int, seconds: float) -> None:
        rates.setdefault(name, []).append(count / seconds)

    for rep in range(reps):
        # staged: the events stage alone, then the send stage alone
        await bench.reset()
        prefix = f"{rep:04d}a{uuid.uuid4().hex[:3]}"
        await bench.create(prefix, 0, n)
        add("enqueue (pipelined enqueue.lua)", n, await bench.enqueue(prefix, 0, n, START))
        t, done = await timed(bench.drain_events)
        assert done == n
        add("start -> first wait: events stage only", n, t)
        t, sent = await timed(bench.drain_sends)
        add("start: send stage only (1 message each)", sent, t)
        await bench.check(prefix, n, waiting=True, msgs=1)
        await bench.enqueue(prefix, 0, n, REPLY_OTHER)
        t, _ = await timed(bench.drain_events)
        add("reply (other -> send -> wait): events stage only", n, t)
        t, sent = await timed(bench.drain_sends)
        add("reply: send stage only", sent, t)
        await bench.check(prefix, n, waiting=True, msgs=3)
        await bench.enqueue(prefix, 0, n, REPLY_CASE)
        t, _ = await timed(bench.drain_events)
        add("reply (case -> 2 sends -> wait): events stage only", n, t)
        await timed(bench.drain_sends)
        await bench.check(prefix, n, waiting=True, msgs=6)
        await bench.enqueue(prefix, 0, n, REPLY_RATE)
        t, _ = await timed(bench.drain_events)
        add("reply (case -> send -> complete): events stage only", n, t)
        await timed(bench.drain_sends)
        await bench.check(prefix, n, waiting=False, msgs=8)

        # concurrent: events and sends at once, as ``chasqui serve`` runs them
        await bench.reset()
        prefix = f"{rep:04d}b{uuid.uuid4().hex[:3]}"
        await bench.create(prefix, 0, n)
        await bench.enqueue(prefix, 0, n, START)
        t, _ = await timed(bench.drain_both)
        add("start -> first wait, message sent (events + sends)", n, t)
        await bench.check(prefix, n, waiting=True, msgs=1)
        await bench.enqueue(prefix, 0, n, REPLY_OTHER)
        t, _ = await timed(bench.drain_both)
        add("reply -> other -> sent -> wait again (events + sends)", n, t)
        await bench.enqueue(prefix, 0, n, REPLY_CASE)
        t, _ = await timed(bench.drain_both)
        add("reply -> case -> 2 sent -> wait again (events + sends)", n, t)
        await bench.enqueue(prefix, 0, n, REPLY_RATE)
        t, _ = await timed(bench.drain_both)
        add("reply -> case -> sent -> completed (events + sends)", n, t)
        await bench.check(prefix, n, waiting=False, msgs=8)
        print(f"  rep {rep + 1}/{reps} done", flush=True)
    return rates


KEY_KINDS = ("contact", "session", "runs", "msgs", "history", "outbox", "q", "lock", "sendlock")


async def memory(bench: Bench, n: int) -> dict[str, Any]:
    """Waiting contacts: Redis bytes per session, and our RSS at 1k, 10k and n."""
    await bench.reset()
    r = bench.redis
    prefix = "mem0"
    out: dict[str, Any] = {"rss": {}, "used": {}}
    steps = [s for s in (1000, 10_000, n) if s <= n]
    have = 0
    base = prev = await bench.used_memory()
    contacts_only = 0
    for target in steps:
        await bench.create(prefix, have, target)
        before_sessions = await bench.used_memory()
        await bench.enqueue(prefix, have, target, START)
        await bench.drain_both()
        after = await bench.used_memory()
        contacts_only += before_sessions - prev
        prev = after
        gc.collect()
        out["rss"][target] = rss_bytes()
        out["used"][target] = after
        have = target
    await bench.check(prefix, n, waiting=True, msgs=1)
    out["n"] = n
    out["base"] = base
    out["contacts_only"] = contacts_only
    # MEMORY USAGE of each per-contact key kind, sampled
    sample = [cid_of(prefix, i) for i in range(0, n, max(1, n // 200))]
    per_kind: dict[str, float] = {}
    kinds = set(KEY_KINDS)  # plus whatever else the layout keeps per contact today
    async for key in r.scan_iter(match=contact_key(sample[0], "*").replace("{", "\\{"), count=100):
        kinds.add(key.decode().split("}:", 1)[1])
    for kind in sorted(kinds, key=lambda k: (k not in KEY_KINDS, k)):
        sizes = [await r.memory_usage(contact_key(cid, kind), samples=0) or 0 for cid in sample]
        per_kind[kind] = statistics.mean(sizes)
    urns = [contact_record(cid_of(prefix, i), i, 0)["urns"][0] for i in range(0, n, n // 200 or 1)]
    per_kind["urn index (chasqui:urn:*)"] = statistics.mean(
        [await r.memory_usage(urn_key(u), samples=0) or 0 for u in urns]
    )
    per_kind["timers zset share (1 a wait)"] = (await r.memory_usage(TIMERS, samples=0) or 0) / n
    for stream in (READY, SENDQ):
        per_kind[f"{stream} share"] = (await r.memory_usage(stream, samples=0) or 0) / n
    out["per_kind"] = per_kind
    out["dbsize"] = await r.dbsize()
    info = await r.info("memory")
    out["server_rss"] = int(info["used_memory_rss"])
    out["value_sizes"] = {
        kind: statistics.mean(
            [
                len(json.dumps(v) if not isinstance(v, bytes) else v)
                for v in [await _raw(r, contact_key(cid, kind)) for cid in sample[:20]]
            ]
        )
        for kind in ("contact", "session", "msgs")
    }
    return out


async def _raw(r: Redis, key: str) -> Any:
    kind = (await r.type(key)).decode()
    if kind == "string":
        return await r.get(key)
    if kind == "hash":
        return b"".join(v for v in (await r.hgetall(key)).values())
    return b""


# -- main ---------------------------------------------------------------------------------------
async def main(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="chqb", dir="/tmp"))
    valkey = EmbeddedValkey(tmp)
    url = await valkey.start()
    redis = connect(url)  # as bot.work.runtime makes it
    try:
        info = await redis.info("server")
        print("machine")
        print(f"  CPU       {cpu_model()} x {os.cpu_count()} cores")
        print(f"  Python    {platform.python_version()} ({platform.python_implementation()})")
        print(f"  Valkey    {info.get('valkey_version') or info.get('redis_version')} via {url}")
        print(
            f"  settings  batch={args.batch} consumer loops={args.consumers} "
            f"reps={args.reps} throughput contacts={args.throughput_contacts} "
            f"memory contacts={args.contacts}"
        )
        bench = Bench(redis, args)

        if args.profile:
            await bench.reset()
            n = args.throughput_contacts
            await bench.create("prof", 0, n)
            await bench.enqueue("prof", 0, n, START)
            await bench.drain_both()
            await bench.enqueue("prof", 0, n, REPLY_OTHER)
            prof = cProfile.Profile()
            prof.enable()
            t, _ = await timed(bench.drain_both)
            prof.disable()
            print(f"\nprofile of {n} replies (events + sends), {n / t:.0f}/s under cProfile")
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats(
                os.environ.get("BENCH_SORT", "tottime")
            ).print_stats(int(os.environ.get("BENCH_LINES", "35")))
            print(buf.getvalue())
            return

        # memory first: RSS figures for a process that has done nothing else yet
        print(f"\nmemory: {args.contacts} contacts waiting at 'ask' ...", flush=True)
        mem = await memory(bench, args.contacts)
        print(f"\nthroughput: {args.reps} reps x {args.throughput_contacts} contacts ...")
        rates = await throughput(bench, args.throughput_contacts, args.reps)

        print("\n1-2. throughput (median of reps; per second)")
        for name, values in rates.items():
            spread = f"  [{min(values):,.0f} .. {max(values):,.0f}]" if len(values) > 1 else ""
            print(f"  {statistics.median(values):>9,.0f}  {name}{spread}")

        n = mem["n"]
        last = max(mem["used"])
        per_session = (mem["used"][last] - mem["base"] - mem["contacts_only"]) / n
        per_contact = (mem["used"][last] - mem["base"]) / n
        print(f"\n3. Redis memory, {n:,} waiting contacts ({mem['dbsize']:,} keys)")
        print(
            f"  {per_session:>9,.0f} B  per waiting session, all it wrote (used_memory delta / N)"
        )
        print(
            f"  {mem['contacts_only'] / n:>9,.0f} B  per contact record + URN index, before start"
        )
        print(f"  {per_contact:>9,.0f} B  per contact, all included")
        print(f"  {mib(mem['server_rss']):>11}  valkey used_memory_rss")
        print("  MEMORY USAGE per key (mean of a sample; bytes):")
        total = 0.0
        for kind, size in mem["per_kind"].items():
            if size:
                print(f"    {size:>7,.0f}  {kind}")
                if kind != "contact" and not kind.startswith("urn"):
                    total += size
        print(f"    {total:>7,.0f}  = session-related keys (all but contact + urn)")
        exact = mem["per_kind"]["session"] + mem["per_kind"]["timers zset share (1 a wait)"]
        print(f"    {exact:>7,.0f}  = session key + its timer's share (issue 12: <= 1,024)")
        print(
            "  payload sizes (JSON bytes): "
            + ", ".join(f"{k} {v:,.0f}" for k, v in mem["value_sizes"].items())
        )

        print("\n4. this process's RSS after gc (waiting contacts -> RSS)")
        for count, rss in mem["rss"].items():
            print(f"  {count:>9,}  {mib(rss)}")
        first, last_rss = mem["rss"][min(mem["rss"])], mem["rss"][max(mem["rss"])]
        print(f"  ratio {max(mem['rss']):,} / {min(mem['rss']):,}: {last_rss / first:.3f}")
    finally:
        await redis.aclose()
        await valkey.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--contacts", type=int, default=100_000, help="waiting contacts, memory part")
    p.add_argument("--throughput-contacts", type=int, default=10_000, help="contacts per rep")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--batch", type=int, default=WorkerSettings().batch)
    p.add_argument("--consumers", type=int, default=WorkerSettings().consumers)
    p.add_argument("--quick", action="store_true", help="smoke run: 5k / 2k contacts, 1 rep")
    p.add_argument("--profile", action="store_true", help="cProfile the reply path and stop")
    args = p.parse_args(argv)
    if args.quick:
        args.contacts, args.throughput_contacts, args.reps = 5000, 2000, 1
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
