"""Issue 12's comparison, run by ``bench/whatsapp.py --baseline``: the stateless echo bot of
bench/echo.py and Chasqui, one process each, the same sandbox (statuses off), the same senders
waiting in the echo flow, the same open-loop generator (bench/loadgen.py), in one run.

Parts (each prints as it goes, then a summary):
- Redis per waiting contact: its session key + its timer's share of the timer set;
- ``--rates``: fixed rates, both bots in turn: CPU per message, ack and reply p50/p99, commands;
- ``--search``: each bot's sustained rate (doubling, then bisecting), then both bots at 50, 90
  and 110 % of Chasqui's, and the ratio Chasqui / echo;
- ``--processes N`` (N > 1): Chasqui restarted with ``server.processes = N``, unpinned, searched
  again; its rate against one process and against the echo bot;
- ``--pin``: the bot under test (Chasqui's server with its Valkey; the echo bot) on core 0, the
  generator, the sandbox and this process on core 1.

A step *sustains* its rate when every webhook is answered 200, >= 99 % of the replies reach the
sandbox by 1.2 s after the step's last POST (a later reply took over 1 s anyway), the reply p99
(missing replies counted as late) is <= 1 s, and the backlog does not grow: the reply p50 of the
step's last quarter is at most 0.25 s over the first quarter's (without this, a step of a few
seconds passes rates a little over capacity). A failed step runs again (``--retries``): a rate
fails only when it fails every time, since the machine may be shared. Each step prints the
generator's achieved rate, its lag and its CPU, and the driving side's share of a core; a step
where the generator did not reach 97 % of the rate is marked, and the summary names the lowest.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import aiohttp  # noqa: E402
import whatsapp as wab  # noqa: E402
from loadgen import Generator, Step  # noqa: E402
from redis.asyncio import Redis  # noqa: E402

from bot.store import Store  # noqa: E402
from bot.store.keys import TIMERS, contact_key, urn_key  # noqa: E402
from channels.whatsapp.sandbox.config import (  # noqa: E402
    DEMO_ACCESS_TOKEN,
    DEMO_APP_SECRET,
    DEMO_PHONE_NUMBER_ID,
)

REPLY_LIMIT = 1.0  # seconds: the reply p99
REPLIED = 0.99  # the share of replies that must arrive
DRIFT = 0.25  # seconds the reply p50 may grow from a step's first quarter to its last
BOT_CORES, REST_CORES = {0}, {1}


# -- processes and cores -------------------------------------------------------------------------
def tree(pid: int) -> list[int]:
    """``pid`` and its descendants, from /proc."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        with contextlib.suppress(OSError):
            for tid in os.listdir(f"/proc/{p}/task"):
                with contextlib.suppress(OSError):
                    todo += [
                        int(c) for c in Path(f"/proc/{p}/task/{tid}/children").read_text().split()
                    ]
    return out


def pin(pids: list[int], cores: set[int], children: bool = True) -> None:
    """Every thread of every process of ``pids`` (and their children) on ``cores``."""
    for pid in pids:
        for p in tree(pid) if children else [pid]:
            with contextlib.suppress(OSError):
                for tid in os.listdir(f"/proc/{p}/task"):
                    with contextlib.suppress(OSError):
                        os.sched_setaffinity(int(tid), cores)


def affinity(name: str, pid: int, children: bool = True) -> str:
    """What the kernel applied: the cores of each thread of the process tree, read back."""
    cores: set[int] = set()
    threads = 0
    for p in tree(pid) if children else [pid]:
        with contextlib.suppress(OSError):
            for tid in os.listdir(f"/proc/{p}/task"):
                with contextlib.suppress(OSError):
                    cores |= os.sched_getaffinity(int(tid))
                    threads += 1
    return f"{name} (pid {pid}, {threads} threads): cores {sorted(cores)}"


def cpu_of(roots: list[int]) -> float:
    """CPU seconds of these processes and their descendants, each counted once."""
    return sum(wab.cpu_seconds(p) for p in {p for root in roots for p in tree(root)})


def own_cpu(roots: list[int]) -> list[float]:
    """CPU seconds per root: its tree less the trees of the other roots inside it (the server
    started its Valkey: the Valkey is the Valkey's, not the server's)."""
    trees = {r: set(tree(r)) for r in roots}
    out = []
    for r in roots:
        inner = [trees[s] for s in roots if s != r and s in trees[r]]
        out.append(sum(wab.cpu_seconds(p) for p in trees[r].difference(*inner)))
    return out


@dataclass
class Bot:
    """A target: where its webhook is, and the processes whose CPU is its cost."""

    name: str
    url: str
    pids: list[int]  # roots: their children count too
    redis: Redis | None = None  # Chasqui's Valkey

    def cpu(self) -> float:
        return cpu_of(self.pids)


@dataclass
class Bench:
    args: argparse.Namespace
    setup: wab.Setup
    http: aiohttp.ClientSession  # controls: the sandbox's /_fake, Chasqui's API
    gen: Generator
    steps: int = 0

    def rest_pids(self) -> list[int]:
        """The driving side: this process, its generators, the sandbox."""
        return [os.getpid(), *self.gen.pids, self.setup.procs["sandbox"].p.pid]

    def rest_cpu(self) -> float:
        return sum(wab.cpu_seconds(p) for p in self.rest_pids())  # not the bench's children

    def phase(self, rate: float, seconds: float) -> tuple[wab.Phase, list[tuple[bytes, str]]]:
        self.steps += 1
        phase = wab.Phase(rate, max(1, int(rate * seconds)), f"s{self.steps}")
        bodies = wab.build_bodies(phase, self.setup.senders, self.setup.offset)
        self.setup.offset += phase.count
        return phase, bodies

    async def replies(self, phase: wab.Phase) -> dict[int, float]:
        sent = await wab.sandbox_sent(self.http, self.setup, phase.count + 1000)
        return wab.replies_by_index(phase, sent)

    async def settle(self, bot: Bot, phase: wab.Phase, limit: float = 120.0) -> None:
        """Wait until the bot has answered everything (a failed step leaves a backlog): every
        reply in, or none new for 2 s; Chasqui's work streams empty, before and after."""
        if bot.redis is not None:
            await wab.drained(bot.redis, limit=limit)
        deadline, last, still = time.monotonic() + limit, -1, 0
        while time.monotonic() < deadline:
            got = len(await self.replies(phase))
            still = still + 1 if got == last else 0
            if got >= phase.count or still >= 2:
                break
            last = got
            await asyncio.sleep(1.0)
        if bot.redis is not None:
            await wab.drained(bot.redis, limit=limit)
        await asyncio.sleep(0.5)


def quarter_p50(by_index: dict[int, float], lo: int, hi: int) -> float:
    values = sorted(by_index.get(i, float("inf")) for i in range(lo, hi))
    return wab.pct(values, 0.5) if values else 0.0


@dataclass
class Result:
    """One search step of one bot."""

    bot: str
    step: Step
    latencies: list[float]  # sorted, the replies received within the window
    missing: int
    drift: float
    cpu: float  # the bot's CPU seconds per message (the window, idle included)
    rest: float  # the driving side's CPU (bench, generators, sandbox): share of a core, sending
    sandbox: float  # the sandbox's CPU seconds per message, sending

    @property
    def p99(self) -> float:
        """Reply p99 with missing replies counted as late."""
        return wab.pct(self.latencies + [float("inf")] * self.missing, 0.99)

    @property
    def received(self) -> float:
        return 1 - self.missing / self.step.count

    @property
    def generator_bound(self) -> bool:
        """The generator did not push the rate (its lag alone is only reported: on a shared
        core it is the bot's load too, and the ack latency counts from the schedule anyway)."""
        return self.step.achieved < 0.97 * self.step.rate

    def failures(self) -> list[str]:
        out = []
        if self.step.statuses != {200: self.step.count}:
            out.append(f"HTTP {dict(sorted(self.step.statuses.items()))} {self.step.errors}")
        if self.received < REPLIED:
            out.append(f"replies {self.received:.1%}")
        if self.p99 > REPLY_LIMIT:
            out.append("reply p99 > 1 s")
        if self.drift > DRIFT:
            out.append(f"backlog grows (+{self.drift:.2f} s)")
        return out

    def line(self) -> str:
        s = self.step
        verdict = "ok" if not self.failures() else "FAIL: " + ", ".join(self.failures())
        lat = self.latencies
        return (
            f"  {self.bot:9} {s.rate:6.0f}/s x {s.count:5d}: ack p99 {pct_ms(s.acks, 0.99)},"
            f" reply p50 {wab.pct(lat, 0.5) * 1000:6.1f} p99 {self.p99 * 1000:7.1f} ms,"
            f" CPU/msg {self.cpu * 1000:5.2f} ms; generator {s.achieved:5.0f}/s lag p99"
            f" {wab.pct(s.lags, 0.99) * 1000:4.1f} ms, {s.cpu / s.count * 1000:4.2f} ms/msg;"
            f" sandbox {self.sandbox * 1000:4.2f} ms/msg; driving side {self.rest:4.0%} of a core"
            f" -> {verdict}"
            + (" [generator behind]" if self.generator_bound else "")
            + (" [generator late]" if wab.pct(s.lags, 0.99) > 0.05 else "")
        )


async def run_step(bench: Bench, bot: Bot, rate: float) -> Result:
    phase, bodies = bench.phase(rate, bench.args.step_seconds)
    sandbox = bench.setup.procs["sandbox"].p.pid
    cpu0, rest0, sandbox0 = bot.cpu(), bench.rest_cpu(), wab.cpu_seconds(sandbox)
    w0 = time.monotonic()
    step = await bench.gen.run(bot.url, bodies, rate)
    rest = (bench.rest_cpu() - rest0) / (time.monotonic() - w0)
    sandbox_cpu = (wab.cpu_seconds(sandbox) - sandbox0) / phase.count
    phase.posted_at = step.posted
    # a reply arriving after this has taken more than REPLY_LIMIT: no need to wait longer
    await asyncio.sleep(max(0.0, max(step.posted) + REPLY_LIMIT + 0.2 - time.time()))
    by_index = await bench.replies(phase)
    cpu = (bot.cpu() - cpu0) / phase.count
    n = phase.count
    drift = quarter_p50(by_index, n - n // 4, n) - quarter_p50(by_index, 0, n // 4)
    latencies = sorted(by_index.values())
    result = Result(bot.name, step, latencies, n - len(latencies), drift, cpu, rest, sandbox_cpu)
    print(result.line(), flush=True)
    await bench.settle(bot, phase)
    return result


@dataclass
class Search:
    bot: str
    rate: float  # the highest rate that held (0: none)
    limit: float | None  # the lowest rate that failed
    steps: list[Result]
    seconds: float
    stopped: str  # why the search ended
    behind: float | None  # the lowest rate the generator could not push, if any

    def line(self) -> str:
        fails = f", fails at {self.limit:.0f}/s" if self.limit else ""
        behind = f"; the generator fell behind at {self.behind:.0f}/s" if self.behind else ""
        return (
            f"{self.bot:11} {self.rate:6.0f}/s{fails}  (search {self.seconds:.0f} s,"
            f" {len(self.steps)} steps, stopped: {self.stopped}{behind})"
        )


async def search(bench: Bench, bot: Bot, start: float) -> Search:
    args = bench.args
    t0 = time.monotonic()
    lo, hi = 0.0, None
    rate, steps, stopped = round(start), [], "bisected"
    behind: float | None = None
    print(
        f"\nsustained rate of {bot.name}: from {rate}/s, {args.step_seconds:g} s a step", flush=True
    )
    warm, bodies = bench.phase(max(10.0, rate / 4), 1.0)  # not counted: connections, caches
    warm.posted_at = (await bench.gen.run(bot.url, bodies, warm.rate)).posted
    await bench.settle(bot, warm)
    while True:
        result = await run_step(bench, bot, rate)
        steps.append(result)
        for _ in range(args.retries if result.failures() else 0):
            # a shared machine has spells: a rate fails only when it fails every time
            print("    once more:", flush=True)
            result = await run_step(bench, bot, rate)
            steps.append(result)
            if not result.failures():
                break
        if result.generator_bound:  # a failure here may be the generator's: said in the summary
            behind = min(rate, behind or rate)
        if result.failures():
            hi = rate
        else:
            lo = rate
        if time.monotonic() - t0 > args.search_budget:
            stopped = "time budget"
            break
        if hi is None:
            if rate >= args.max_rate:
                stopped = "--max-rate"
                break
            rate = round(min(rate * 2, args.max_rate))
        elif hi - lo <= max(args.precision * hi, 5):
            break
        else:
            rate = round((lo + hi) / 2)
    found = Search(bot.name, lo, hi, steps, time.monotonic() - t0, stopped, behind)
    print(f"  -> {found.line()}")
    return found


# -- fixed rates ---------------------------------------------------------------------------------
@dataclass
class Side:
    """One target's result at one fixed rate."""

    name: str
    phase: wab.Phase
    step: Step | None = None
    cpu: float = 0.0  # CPU seconds per message, process (+ its Valkey)
    cpu_parts: list[float] = field(default_factory=list)  # the same, per root pid
    commands: dict[str, tuple[float, float]] = field(default_factory=dict)  # calls, usec per msg


async def commandstats(redis: Redis) -> dict[str, tuple[int, int]]:
    """Valkey's calls and microseconds per command, since its start."""
    info = await redis.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"]))
        for name, v in info.items()
        if isinstance(v, dict)
    }


async def measure(bench: Bench, bot: Bot, rate: float, spy_seconds: float = 0) -> Side:
    """One bot at one rate for --duration: CPU from the first POST to the last answer + 1 s."""
    phase, bodies = bench.phase(rate, bench.args.duration)
    side = Side(bot.name, phase)
    spy = wab.py_spy(bench.setup, spy_seconds) if spy_seconds else None
    cpu0 = own_cpu(bot.pids)
    stats0 = await commandstats(bot.redis) if bot.redis is not None else {}
    side.step = step = await bench.gen.run(bot.url, bodies, rate)
    phase.posted_at, phase.acks, phase.statuses = step.posted, step.acks, step.statuses
    deadline = time.monotonic() + 30
    while len(await bench.replies(phase)) < phase.count and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    await asyncio.sleep(1.0)  # let the last sends finish their bookkeeping (counted, idle included)
    side.cpu_parts = [
        (c1 - c0) / phase.count for c1, c0 in zip(own_cpu(bot.pids), cpu0, strict=True)
    ]
    side.cpu = sum(side.cpu_parts)
    if bot.redis is not None:
        stats1 = await commandstats(bot.redis)
        for name, (calls, usec) in stats1.items():
            c0, u0 = stats0.get(name, (0, 0))
            if calls > c0 and name != "info":  # INFO is this bench asking
                side.commands[name] = ((calls - c0) / phase.count, (usec - u0) / phase.count)
    if spy is not None:
        spy.p.wait(30)
        spy_file = bench.setup.tmp / "server.spy"
        print(f"  py-spy of the server at {phase.rate:.0f}/s: {wab.top_frames(spy_file)}")
        print(f"  {wab.self_frames(spy_file)}")
    await bench.settle(bot, phase)
    by_index = await bench.replies(phase)
    phase.latencies, phase.missing = sorted(by_index.values()), phase.count - len(by_index)
    return side


async def fixed_rates(
    bench: Bench, bots: tuple[Bot, Bot], rates: list[float], title: str
) -> list[tuple[Side, Side]]:
    results = []
    for rate in rates:
        pair = []
        for bot in bots:
            print(f"  {rate:.0f}/s x {int(rate * bench.args.duration)}: {bot.name} ...", flush=True)
            spy = bench.args.duration if bot.redis and bench.args.profile_server == rate else 0
            pair.append(await measure(bench, bot, rate, spy))
            await asyncio.sleep(1)
        results.append((pair[0], pair[1]))
    print_sides(results, title)
    return results


def print_sides(results: list[tuple[Side, Side]], title: str) -> None:
    print(
        f"\n{title} (CPU per message: the process, + its Valkey for Chasqui; ack: POST -> 200 from"
        " the scheduled time; reply: POST -> the sandbox receiving the answer)"
    )
    head = f"  {'rate':>5} {'target':8} {'CPU/msg':>9} {'ack p50':>8} {'ack p99':>8}"
    print(f"{head} {'reply p50':>9} {'reply p99':>9}  missing  HTTP  generator")
    for pair in results:
        for side in pair:
            ph, step = side.phase, side.step
            acks, lat = sorted(ph.acks), ph.latencies
            gen = (
                f"{step.achieved:.0f}/s lag p99 {wab.pct(step.lags, 0.99) * 1000:.1f} ms"
                if step
                else ""
            )
            print(
                f"  {ph.rate:5.0f} {side.name:8} {side.cpu * 1000:6.2f} ms"
                f" {pct_ms(acks, 0.5)} {pct_ms(acks, 0.99)}"
                f" {pct_ms(lat, 0.5):>9} {pct_ms(lat, 0.99):>9}"
                f"  {ph.missing:7d}  {dict(sorted(ph.statuses.items()))}  {gen}"
                + (f"  errors {step.errors}" if step and step.errors else "")
            )
    for _, c in results:
        parts = " + ".join(f"{x * 1000:.2f}" for x in c.cpu_parts)
        print(f"  Chasqui's CPU/msg at {c.phase.rate:.0f}/s: {parts} ms (server + Valkey)")
    print("  ratio chasqui / echo")
    for e, c in results:
        ratio = {
            "CPU/msg": c.cpu / max(e.cpu, 1e-9),
            "ack p99": ratio_of(c.phase.acks, e.phase.acks, 0.99),
            "reply p50": ratio_of(c.phase.latencies, e.phase.latencies, 0.5),
            "reply p99": ratio_of(c.phase.latencies, e.phase.latencies, 0.99),
        }
        print(f"  {e.phase.rate:5.0f}/s  " + "  ".join(f"{k} {v:.1f}x" for k, v in ratio.items()))


def pct_ms(values: list[float], q: float) -> str:
    return f"{wab.pct(sorted(values), q) * 1000:5.1f} ms"


def ratio_of(a: list[float], b: list[float], q: float) -> float:
    return wab.pct(sorted(a), q) / max(wab.pct(sorted(b), q), 1e-9)


# -- Valkey: commands per message, memory per waiting contact ------------------------------------
async def round_trips(
    bench: Bench, redis: Redis, bot: Bot, rate: float
) -> tuple[dict[str, float], dict[str, float]]:
    """One more Chasqui phase under MONITOR: commands per message sent by clients and run inside
    scripts (MONITOR tags those ``lua``). Commands sent in one pipeline share a round trip, so the
    client column is an upper bound on round trips. MONITOR slows Valkey: no timings here."""
    phase, bodies = bench.phase(rate, bench.args.duration)
    client: dict[str, int] = {}
    script: dict[str, int] = {}
    from bot.store.scripts import lua_source, sha_of  # a script's sha is of its includes too

    lua = ROOT / "bot" / "store" / "lua"
    scripts = {sha_of(lua_source(f.stem)): f.stem for f in lua.glob("*.lua")}
    ready = asyncio.Event()

    async def watch() -> None:
        async with redis.monitor() as monitor:
            ready.set()
            async for cmd in monitor.listen():
                words = [w.strip('"').lower() for w in cmd["command"].split(" ", 2)]
                name = " ".join(words[:2]) if words[0] in ("script", "client") else words[0]
                if words[0] == "evalsha" and len(words) > 1:
                    name = f"evalsha {scripts.get(words[1], words[1][:12])}"
                into = script if cmd["client_type"] == "lua" else client
                into[name] = into.get(name, 0) + 1

    task = asyncio.create_task(watch())
    await asyncio.wait_for(ready.wait(), 10)
    step = await bench.gen.run(bot.url, bodies, rate)
    phase.posted_at = step.posted
    await bench.settle(bot, phase, limit=30)
    await asyncio.sleep(1.0)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await wab.drained(redis)
    n = phase.count
    return (
        {k: v / n for k, v in client.items() if k not in ("info", "monitor")},
        {k: v / n for k, v in script.items()},
    )


def print_round_trips(rate: float, client: dict[str, float], script: dict[str, float]) -> None:
    print(f"\nChasqui's commands per answered message under MONITOR at {rate:.0f}/s")
    print(f"  {'command':22} {'by clients':>11} {'in scripts':>11}")
    for name in sorted(set(client) | set(script), key=lambda n: -client.get(n, 0.0)):
        print(f"  {name:22} {client.get(name, 0.0):11.2f} {script.get(name, 0.0):11.2f}")
    total = f"{sum(client.values()):11.2f} {sum(script.values()):11.2f}"
    print(f"  {'total':22} {total}")


def print_commandstats(sides: list[Side]) -> None:
    if not sides:
        return
    print("\nValkey INFO commandstats per answered message (Chasqui): calls, usec inside Valkey")
    zero = (0.0, 0.0)
    names = sorted(
        {n for side in sides for n in side.commands},
        key=lambda n: -max(side.commands.get(n, zero)[0] for side in sides),
    )
    print(f"  {'command':22}" + "".join(f" {side.phase.rate:8.0f}/s {'usec':>7}" for side in sides))
    for name in names:
        cells = [side.commands.get(name, zero) for side in sides]
        print(f"  {name:22}" + "".join(f" {calls:10.2f} {usec:7.1f}" for calls, usec in cells))
    sums = [[sum(v[i] for v in side.commands.values()) for i in (0, 1)] for side in sides]
    print(f"  {'total':22}" + "".join(f" {calls:10.2f} {usec:7.1f}" for calls, usec in sums))
    print("  (EVALSHA's usec includes the commands its script runs, counted again in their rows)")


async def waiting_memory(redis: Redis, senders: int) -> str:
    """Bytes per waiting contact for its session + its timer: MEMORY USAGE of the session key
    (mean of a sample) + the timer set's MEMORY USAGE / its entries (0 with no timer)."""
    sample = range(0, senders, max(1, senders // 200))
    raw = await redis.mget([urn_key(f"whatsapp:+{wab.wa_of(i)}") for i in sample])
    cids = [r.decode() if isinstance(r, bytes) else str(r) for r in raw if r]
    session = statistics.mean(
        [await redis.memory_usage(contact_key(c, "session"), samples=0) or 0 for c in cids]
    )
    timers = int(await redis.zcard(TIMERS))
    share = (await redis.memory_usage(TIMERS, samples=0) or 0) / timers if timers else 0.0
    sizes = [len(await redis.get(contact_key(c, "session")) or b"") for c in cids[:20]]
    note = f"timer set {timers} entries" if timers else "no timer: the echo wait has no timeout"
    return (
        f"{session + share:,.0f} B per waiting contact = session key {session:,.0f} B"
        f" (JSON {statistics.mean(sizes):,.0f} B) + timer share {share:,.0f} B ({note});"
        " target <= 1 KB"
    )


# -- the run -------------------------------------------------------------------------------------
async def start_echo(bench: Bench, port: int) -> Bot:
    setup = bench.setup
    argv = [wab.PYTHON, str(ROOT / "bench" / "echo.py"), "--port", str(port)]
    argv += ["--graph-url", setup.sandbox, "--app-secret", DEMO_APP_SECRET]
    argv += ["--token", DEMO_ACCESS_TOKEN, "--phone-number-id", DEMO_PHONE_NUMBER_ID]
    setup.procs["echo"] = echo = wab.Proc("echo", argv, setup.tmp / "echo.log")
    await wab.wait_http(bench.http, f"http://127.0.0.1:{port}/healthz", echo)
    return Bot("echo", f"http://127.0.0.1:{port}/webhook", [echo.p.pid])


def chasqui(setup: wab.Setup, redis: Redis, name: str = "chasqui") -> Bot:
    pids = setup.pids()
    return Bot(name, setup.webhook_url, [pids["server"], pids["valkey"]], redis)


def print_machine(version: str, args: argparse.Namespace) -> None:
    print("machine")
    print(f"  CPU       {wab.cpu_model()} x {os.cpu_count()} cores")
    print(f"  load avg  {load()} (at start)")
    print(f"  Python    {platform.python_version()}, aiohttp {aiohttp.__version__}")
    print(f"  Valkey    {version} (Chasqui's embedded one)")
    print(
        f"  generator {args.generators} process(es), {args.connections} connections in all,"
        f" {args.client} client"
    )


def load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


async def baseline(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="chqe", dir="/tmp"))
    setup = wab.Setup(tmp, wab.free_port(), wab.free_port(), 1)
    setup.senders = args.senders
    longest = max(args.step_seconds if args.search else 0, args.duration)
    setup.record_limit = max(10_000, int(args.max_rate * longest * 1.3) + args.senders + 1000)
    redis: Redis | None = None
    all_cores = os.sched_getaffinity(0)
    if args.pin:
        if not all_cores >= BOT_CORES | REST_CORES:
            raise SystemExit(f"--pin needs cores 0 and 1; this process may use {all_cores}")
        os.sched_setaffinity(0, REST_CORES)  # the sandbox, the server and generators inherit it
    gen = Generator(args.generators, args.connections, args.client)
    started = time.monotonic()
    try:
        await gen.start()
        async with wab.generator_session(64) as http:
            bench = Bench(args, setup, http, gen)
            # statuses off: both targets do the same job (text in -> text out), nothing else
            await setup.start_sandbox(http, statuses=False)
            await setup.start_server(http, max_mps=0)
            echo = await start_echo(bench, wab.free_port())
            redis = await wab.redis_of(tmp)
            chq = chasqui(setup, redis)
            print_machine((await redis.info("server")).get("valkey_version", "?"), args)
            if args.pin:
                pin(chq.pids + echo.pids, BOT_CORES)
            print("  affinity  " + ("pinned" if args.pin else "not pinned"))
            for name, pid in [("chasqui server", chq.pids[0]), ("valkey", chq.pids[1])]:
                print(f"    {affinity(name, pid)}")
            print(f"    {affinity('echo', echo.pids[0])}")
            print(f"    {affinity('sandbox', setup.procs['sandbox'].p.pid)}")
            print(f"    {affinity('bench', os.getpid(), children=False)}")
            for pid in gen.pids:
                print(f"    {affinity('generator', pid)}")

            print(f"\nsetup: {args.senders} senders write once and wait in the echo flow ...")
            await wab.prepare_senders(http, setup, Store(redis), args.senders)
            print(f"  Redis: {await waiting_memory(redis, args.senders)}")
            bots = (echo, chq)
            idle0 = [b.cpu() for b in bots]
            await asyncio.sleep(3.0)
            idle = [(b.cpu() - c) / 3.0 for b, c in zip(bots, idle0, strict=True)]
            print(
                "  idle CPU over 3 s: "
                + ", ".join(f"{b.name} {c:.1%}" for b, c in zip(bots, idle, strict=True))
            )

            sides: list[Side] = []
            if args.rates:
                results = await fixed_rates(bench, bots, args.rates, "fixed rates, side by side")
                sides += [c for _, c in results]
            found: list[Search] = []
            if args.search:
                found = [await search(bench, bot, args.search_start) for bot in bots]
                cap = found[1].rate
                if cap:
                    rates = [float(round(cap * f)) for f in (0.5, 0.9, 1.1)]
                    print(f"\nat 50, 90 and 110 % of Chasqui's sustained {cap:.0f}/s: {rates}")
                    results = await fixed_rates(
                        bench, bots, rates, "at 50 / 90 / 110 % of Chasqui's capacity"
                    )
                    sides += [c for _, c in results]
            print_commandstats(sides)
            if args.monitor:
                half = round(found[1].rate / 2) if found else 0
                rate = args.rates[0] if args.rates else max(50.0, half)
                client, script = await round_trips(bench, redis, chq, rate)
                print_round_trips(rate, client, script)
            multi: Search | None = None
            if args.processes > 1:
                multi, redis = await more_processes(bench, redis, found)
            print_summary(found, multi, args)
            took = time.monotonic() - started
            print(f"\nload avg at the end {load()}; the whole run took {took:.0f} s")
    finally:
        if redis is not None:
            await redis.aclose()
        await gen.stop()
        setup.stop("echo")
        setup.stop_all()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


async def more_processes(bench: Bench, redis: Redis, found: list[Search]) -> tuple[Search, Redis]:
    """Chasqui again with ``server.processes = N``, nothing pinned, on the same data."""
    setup, args = bench.setup, bench.args
    print(f"\nserver.processes = {args.processes}, unpinned: restarting Chasqui ...", flush=True)
    await redis.aclose()
    setup.stop("server")
    all_cores = set(range(os.cpu_count() or 1))
    pin(bench.rest_pids(), all_cores, children=False)
    setup.processes = args.processes
    await setup.start_server(bench.http, max_mps=0)
    redis = await wab.redis_of(setup.tmp)
    for i in range(0, args.senders, max(1, args.senders // 20)):
        raw = await redis.get(urn_key(f"whatsapp:+{wab.wa_of(i)}"))
        cid = raw.decode() if isinstance(raw, bytes) else str(raw)
        session = json.loads(await redis.get(contact_key(cid, "session")) or b"{}")
        if not session.get("wait"):
            raise SystemExit(f"after the restart {cid} is not waiting in the echo flow")
    bot = chasqui(setup, redis, f"chasqui x{args.processes}")
    print(f"    {affinity(bot.name, bot.pids[0])}")
    print(f"    {affinity('valkey', bot.pids[1])}")
    start = found[1].rate if found and found[1].rate else args.search_start
    return await search(bench, bot, start), redis


def print_summary(found: list[Search], multi: Search | None, args: argparse.Namespace) -> None:
    if not found and multi is None:
        return
    rule = "reply p99 <= 1 s, >= 99 % replies, every webhook 200, no growing backlog"
    where = "pinned: each bot on core 0 with its Redis" if args.pin else "not pinned"
    print(f"\nsustained webhook -> reply ({rule}; {args.step_seconds:g} s steps)")
    for s in [*found, *([multi] if multi else [])]:
        print(f"  {s.line()}")
    if len(found) == 2 and found[0].rate:
        echo, one = found[0].rate, found[1].rate
        print(f"  {where}: chasqui / echo = {one / echo:.2f} (goal >= 0.5)")
        if multi is not None:
            print(
                f"  chasqui x{args.processes} unpinned / echo = {multi.rate / echo:.2f}"
                " (goal >= 1.8 x 0.5 = 0.9: the issue's '>= 1.8x that')"
            )
            if one:
                print(f"  chasqui x{args.processes} unpinned / chasqui x1 = {multi.rate / one:.2f}")
