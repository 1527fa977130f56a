"""Benchmark: the WhatsApp channel end to end, over real HTTP, with a real ``chasqui serve``.

Three processes besides this one, all on loopback, all in a temporary directory:
- ``python -m bot.cli --config <tmp>/config.toml serve`` (embedded Valkey in <tmp>/var, workers
  running), with two flows of its own: ``echo`` (wait for a reply, answer it, wait again) and
  ``tpl`` (send the approved ``order_delivered`` template, end);
- ``python -m bot.cli sandbox --port P --max-mps 0 --no-pair-rate`` (Meta's stand-in), which the
  server's WhatsApp channel uses as its Graph API (``graph_url = "http://127.0.0.1:P"``);
- the embedded Valkey, started by the server.
The load generator is this process (aiohttp), open loop: requests are scheduled by time.

Prints:
1. webhook acknowledgement latency (p50/p99/max/count) at 200 and 500 signed inbound text
   messages per second, each answered by the echo flow (engine, sender, sandbox, statuses live);
2. reply -> send latency: from POSTing a contact's reply webhook to the sandbox receiving the
   answer (the ``at`` of its ``GET /_fake/sent`` record; same host clock), at 20, 200 and 500/s;
3. template sends per second to the sandbox with the rate limit off (N contacts started in
   ``tpl`` through ``Store.enqueue``), and the measured rate with ``max_mps = 80``.

With ``--baseline`` it instead runs issue 12's comparison (bench/baseline.py): the stateless echo
bot of bench/echo.py and Chasqui (same sandbox, statuses off, same senders waiting in the echo
flow, same generator), one process each: CPU per message, ack and reply p50/p99 at fixed rates,
the ratio Chasqui/echo and Valkey's ``INFO commandstats`` per message; with ``--search`` each
bot's sustained rate and the figures at 50/90/110 % of Chasqui's; ``--pin``, ``--processes 2``.

Usage:  .venv/bin/python bench/whatsapp.py [--quick] [--senders 3000] [--duration 15]
        .venv/bin/python bench/whatsapp.py --baseline [--quick] [--rates 100,300]
        .venv/bin/python bench/whatsapp.py --baseline --pin --search --processes 2 --senders 1000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from redis.asyncio import Redis  # noqa: E402

from bot.store import Store, dumps  # noqa: E402
from bot.store.keys import READY, SENDQ, contact_key, urn_key  # noqa: E402
from channels.whatsapp.sandbox import demo_config, encode, sign  # noqa: E402
from channels.whatsapp.sandbox.config import (  # noqa: E402
    DEMO_ACCESS_TOKEN,
    DEMO_APP_SECRET,
    DEMO_PHONE_NUMBER_ID,
    DEMO_VERIFY_TOKEN,
    DEMO_WABA_ID,
)
from channels.whatsapp.sandbox.inbound import build_message  # noqa: E402
from channels.whatsapp.sandbox.state import SandboxState  # noqa: E402
from channels.whatsapp.sandbox.webhooks import inbound_value, messages_envelope  # noqa: E402

PYTHON = sys.executable
ADMIN = "bench-admin-token"  # the server's, and the one the sandbox's /_fake controls take
AUTH = {"Authorization": f"Bearer {ADMIN}"}
CHANNEL = "whatsapp"

ECHO_FLOW = """\
name: Bench echo
nodes:
  - id: channel
    update_contact: {channel: whatsapp}
    next: wait
  - id: wait
    wait_for_reply:
      result: said
      other: {category: Other, next: answer}
  - id: answer
    send_message:
      text: "Recibido: @input.text"
    next: wait
"""

TEMPLATE_FLOW = """\
name: Bench template
language: es
nodes:
  - id: channel
    update_contact: {channel: whatsapp}
    next: open
  - id: open
    send_message:
      template:
        name: order_delivered
        language: es
        body: ["@contact.first_name", "@fields.order_id"]
        buttons: [{quick_reply: "RECEIVED"}, {quick_reply: "NOT_RECEIVED"}]
"""


# -- the machine ---------------------------------------------------------------------------------
def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted ``values``."""
    if not values:
        return float("nan")
    return values[min(len(values) - 1, max(0, int(q * len(values) + 0.5) - 1))]


def summary(values: list[float]) -> str:
    v = sorted(values)
    return (
        f"p50 {pct(v, 0.50) * 1000:7.1f} ms  p99 {pct(v, 0.99) * 1000:7.1f} ms  "
        f"max {v[-1] * 1000 if v else float('nan'):7.1f} ms  n={len(v)}"
    )


# -- child processes -----------------------------------------------------------------------------
class Proc:
    """A child in its own process group; stopped by SIGTERM to the group, then SIGKILL."""

    def __init__(self, name: str, argv: list[str], log: Path) -> None:
        self.name, self.log = name, log
        with log.open("ab") as out:
            self.p = subprocess.Popen(
                argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def alive(self) -> bool:
        return self.p.poll() is None

    def stop(self, timeout: float = 20.0) -> None:
        if not self.alive():
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.p.pid, signal.SIGTERM)
        try:
            self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.p.pid, signal.SIGKILL)
            self.p.wait(5)

    def tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


async def wait_http(http: aiohttp.ClientSession, url: str, proc: Proc, limit: float = 30) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if not proc.alive():
            raise SystemExit(f"{proc.name} exited:\n{proc.tail()}")
        with contextlib.suppress(aiohttp.ClientError, OSError):
            async with http.get(url) as r:
                if r.status < 500:
                    return
        await asyncio.sleep(0.1)
    raise SystemExit(f"{proc.name} did not answer {url} within {limit}s:\n{proc.tail()}")


@dataclass
class Setup:
    tmp: Path
    server_port: int
    sandbox_port: int
    processes: int = 1
    procs: dict[str, Proc] = field(default_factory=dict)
    senders: int = 0  # --baseline: how many senders wait in the echo flow
    record_limit: int = 0  # the sandbox's --record-limit (0: its default, 10,000)
    offset: int = 0  # --baseline: the next sender to write

    @property
    def server(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"

    @property
    def sandbox(self) -> str:
        return f"http://127.0.0.1:{self.sandbox_port}"

    @property
    def webhook_url(self) -> str:
        return f"{self.server}/webhooks/whatsapp/{CHANNEL}"

    def write_config(self, max_mps: float) -> Path:
        flows = self.tmp / "flows"
        flows.mkdir(exist_ok=True)
        (flows / "echo.yaml").write_text(ECHO_FLOW)
        (flows / "tpl.yaml").write_text(TEMPLATE_FLOW)
        path = self.tmp / "config.toml"
        path.write_text(
            f"""\
[server]
host = "127.0.0.1"
port = {self.server_port}
admin_token = "{ADMIN}"
processes = {self.processes}

[redis]
url = ""
data_dir = "{self.tmp / "var"}"

[flows]
path = "{flows}"

[engine]
loop_repeats = 1000

[channels.{CHANNEL}]
type = "whatsapp"
graph_url = "{self.sandbox}"
phone_number_id = "{DEMO_PHONE_NUMBER_ID}"
waba_id = "{DEMO_WABA_ID}"
access_token = "{DEMO_ACCESS_TOKEN}"
app_secret = "{DEMO_APP_SECRET}"
verify_token = "{DEMO_VERIFY_TOKEN}"
max_mps = {max_mps}
"""
        )
        return path

    async def start_sandbox(self, http: aiohttp.ClientSession, *, statuses: bool) -> None:
        argv = [PYTHON, "-m", "bot.cli", "sandbox", "--port", str(self.sandbox_port)]
        argv += ["--admin-token", ADMIN]
        argv += ["--webhook-url", self.webhook_url, "--max-mps", "0", "--no-pair-rate"]
        if not statuses:
            argv.append("--no-statuses")
        if self.record_limit:
            argv += ["--record-limit", str(self.record_limit)]
        self.procs["sandbox"] = proc = Proc("sandbox", argv, self.tmp / "sandbox.log")
        await wait_http(http, f"{self.sandbox}/_fake/clock", proc)

    async def start_server(self, http: aiohttp.ClientSession, *, max_mps: float) -> None:
        config = self.write_config(max_mps)
        argv = [PYTHON, "-m", "bot.cli", "--config", str(config), "serve"]
        self.procs["server"] = proc = Proc("server", argv, self.tmp / "server.log")
        await wait_http(http, f"{self.server}/healthz", proc, limit=60)
        # templates: synced at start already; once more so that we know they are there
        async with http.post(f"{self.server}/api/v1/templates/sync", headers=AUTH) as r:
            synced = await r.json()
        got = synced.get("synced", {}).get(CHANNEL, {})
        if not got.get("templates"):
            raise SystemExit(f"template sync failed: {synced}")

    def pids(self) -> dict[str, int]:
        out = {name: proc.p.pid for name, proc in self.procs.items()}
        with contextlib.suppress(OSError, ValueError):
            out["valkey"] = int((self.tmp / "var" / "valkey.pid").read_text().strip())
        out["bench"] = os.getpid()
        return out

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None:
            proc.stop()

    def stop_all(self) -> None:
        for name in ("server", "sandbox"):
            self.stop(name)
        # the embedded Valkey is spawned in its own session, to outlive a crashed server; a
        # clean server stop shuts it down, and if that did not happen we end it by its pid
        pidfile = self.tmp / "var" / "valkey.pid"
        with contextlib.suppress(OSError, ValueError):
            pid = int(pidfile.read_text().strip())
            os.kill(pid, signal.SIGTERM)
            for _ in range(50):
                os.kill(pid, 0)
                time.sleep(0.1)


# -- helpers over Redis and the sandbox ----------------------------------------------------------
async def redis_of(tmp: Path) -> Redis:
    url = (tmp / "var" / "valkey.url").read_text().strip()
    return Redis.from_url(url)


async def drained(redis: Redis, limit: float = 120.0, poll: float = 0.02) -> float:
    """Wait until both work streams are empty (every event applied, every send recorded)."""
    deadline = time.monotonic() + limit
    quiet = 0
    while time.monotonic() < deadline:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.xlen(READY)
            pipe.xlen(SENDQ)
            ready, sendq = await pipe.execute()
        quiet = quiet + 1 if ready == 0 and sendq == 0 else 0
        if quiet >= 2:
            return time.monotonic()
        await asyncio.sleep(poll)
    raise SystemExit(f"streams not drained within {limit}s (ready={ready}, sendq={sendq})")


async def sandbox_sent(
    http: aiohttp.ClientSession, setup: Setup, limit: int = 0
) -> list[dict[str, Any]]:
    """The sends the sandbox kept (the last ``limit`` of them, if given)."""
    query = f"?limit={limit}" if limit else ""
    async with http.get(f"{setup.sandbox}/_fake/sent{query}", headers=AUTH) as r:
        data: list[dict[str, Any]] = (await r.json())["data"]
    return data


async def sandbox_quiet(http: aiohttp.ClientSession, setup: Setup, limit: float = 30) -> None:
    """Wait until the sandbox has no status webhooks left to post."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        async with http.get(f"{setup.sandbox}/_fake/webhooks?kind=none", headers=AUTH) as r:
            if (await r.json())["pending"] == 0:
                return
        await asyncio.sleep(0.1)


def wa_of(i: int) -> str:
    return f"549110{i:07d}"


async def gather_chunks(coros: Iterator[Any], size: int = 50) -> None:
    batch: list[Any] = []
    for c in coros:
        batch.append(c)
        if len(batch) >= size:
            await asyncio.gather(*batch)
            batch = []
    if batch:
        await asyncio.gather(*batch)


# -- parts 1 and 2: webhooks in, answers out -----------------------------------------------------
async def prepare_senders(http: aiohttp.ClientSession, setup: Setup, store: Store, n: int) -> None:
    """n contacts who wrote once (sandbox window open), each waiting in the echo flow."""
    for lo in range(0, n, 100):
        specs = [
            {"from": wa_of(i), "name": f"Ana {i}", "text": "hola"}
            for i in range(lo, min(lo + 100, n))
        ]
        async with http.post(
            f"{setup.sandbox}/_fake/inbound", json={"messages": specs}, headers=AUTH
        ) as r:
            body = await r.json()
            if body["delivery"]["status"] != 200:
                raise SystemExit(f"setup webhook refused: {body}")
    await drained(store.redis)
    raw = await store.redis.mget([urn_key(f"whatsapp:+{wa_of(i)}") for i in range(n)])
    cids = [r.decode() if isinstance(r, bytes) else r for r in raw]
    if not all(cids):
        raise SystemExit("some senders have no contact after their first message")
    now = time.time()
    await gather_chunks(
        store.enqueue(cid, {"type": "start", "flow": "echo", "at": now}) for cid in cids if cid
    )
    await drained(store.redis)
    for cid in cids[:: max(1, n // 20)]:
        session = json.loads(await store.session_raw(str(cid)) or b"{}")
        assert session.get("wait"), f"{cid} is not waiting in the echo flow: {session}"


@dataclass
class Phase:
    rate: float
    count: int
    tag: str
    acks: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    posted_at: list[float] = field(default_factory=list)  # wall clock, for part 2
    max_lag: float = 0.0  # how late the generator itself started a request
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)  # part 2
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds per process, this phase
    missing: int = 0  # answers the sandbox never received


def build_bodies(phase: Phase, senders: int, offset: int) -> list[tuple[bytes, str]]:
    """Signed webhook bodies, one text message each, built the way the sandbox builds them."""
    state = SandboxState(demo_config(""))  # our own counter of wamids, fresh for this phase
    number = state.config.numbers[0]
    out = []
    for i in range(phase.count):
        k = (offset + i) % senders
        spec = {"from": wa_of(k), "name": f"Ana {k}", "text": f"{phase.tag}-{i} hola"}
        contact, message = build_message(state, number, spec)
        obj = messages_envelope(DEMO_WABA_ID, [inbound_value(number, [contact], [message])])
        raw = encode(obj)
        out.append((raw, sign(raw, DEMO_APP_SECRET)))
    return out


async def run_phase(
    http: aiohttp.ClientSession, url: str, phase: Phase, bodies: list[tuple[bytes, str]]
) -> None:
    """POST the bodies at ``phase.rate`` per second, open loop; ack latency from the schedule."""
    loop = asyncio.get_running_loop()
    phase.acks = [0.0] * phase.count
    phase.posted_at = [0.0] * phase.count
    t0 = loop.time() + 0.1

    async def one(i: int, due: float) -> None:
        raw, signature = bodies[i]
        phase.max_lag = max(phase.max_lag, loop.time() - due)
        phase.posted_at[i] = time.time()
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": signature}
        try:
            async with http.post(url, data=raw, headers=headers) as r:
                await r.read()
                status = r.status
        except (aiohttp.ClientError, TimeoutError):
            status = -1
        phase.acks[i] = loop.time() - due
        phase.statuses[status] = phase.statuses.get(status, 0) + 1

    tasks = []
    for i in range(phase.count):
        due = t0 + i / phase.rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    _, pending = await asyncio.wait(tasks, timeout=60)
    for task in pending:
        task.cancel()
    phase.elapsed = loop.time() - t0
    if pending:
        raise SystemExit(f"{len(pending)} webhook POSTs still unanswered after 60 s")


TOKEN = re.compile(r"Recibido: (\w+)-(\d+) hola")


def replies_by_index(phase: Phase, sent: list[dict[str, Any]]) -> dict[int, float]:
    """Message index -> the sandbox's receive time of its answer - our POST, for this phase."""
    out = {}
    for record in sent:
        body = record.get("body") or {}
        text = (body.get("text") or {}).get("body", "") if isinstance(body, dict) else ""
        m = TOKEN.match(text)
        if m and m.group(1) == phase.tag and record.get("http_status") == 200:
            i = int(m.group(2))
            out[i] = record["at"] - phase.posted_at[i]
    return out


def reply_latencies(phase: Phase, sent: list[dict[str, Any]]) -> tuple[list[float], int]:
    """This phase's reply latencies, and how many of its messages have no answer yet."""
    out = list(replies_by_index(phase, sent).values())
    return out, phase.count - len(out)


# -- part 3: template sends ----------------------------------------------------------------------
async def create_contacts(redis: Redis, prefix: str, n: int) -> list[str]:
    """Contacts with a name and an order id, written as ``contact_for_urn`` writes them."""
    cids = [f"{prefix}-0000-4000-8000-{i:012d}" for i in range(n)]
    now = time.time()
    for lo in range(0, n, 1000):
        async with redis.pipeline(transaction=False) as pipe:
            for i in range(lo, min(lo + 1000, n)):
                urn = f"whatsapp:+55119{prefix[-3:]}{i:06d}"
                record = {
                    "uuid": cids[i],
                    "name": f"Ana Souza {i}",
                    "urns": [urn],
                    "fields": {"order_id": f"A-{i:06d}"},
                    "groups": [],
                    "status": "active",
                    "created_on": now,
                }
                pipe.set(urn_key(urn), cids[i])
                pipe.set(contact_key(cids[i], "contact"), dumps(record))
            await pipe.execute()
    return cids


async def template_run(
    http: aiohttp.ClientSession, setup: Setup, store: Store, prefix: str, n: int
) -> dict[str, Any]:
    cids = await create_contacts(store.redis, prefix, n)
    before = len(await sandbox_sent(http, setup))
    t0 = time.monotonic()
    wall0 = time.time()
    await gather_chunks(
        store.enqueue(cid, {"type": "start", "flow": "tpl", "at": wall0}) for cid in cids
    )
    enqueued = time.monotonic() - t0
    t1 = await drained(store.redis, limit=max(120.0, n / 20))
    records = [
        r
        for r in (await sandbox_sent(http, setup))
        if r["at"] >= wall0 - 1
        and isinstance(r.get("body"), dict)
        and r["body"].get("type") == "template"
    ]
    ok = [r for r in records if r.get("http_status") == 200]
    # every contact has its template recorded as sent (a sample), and none failed
    for cid in cids[:: max(1, n // 40)]:
        msgs = await store.messages(cid)
        assert [m.get("status") for m in msgs] == ["sent"], (cid, msgs)
    at = sorted(r["at"] for r in ok)
    per_second: dict[int, int] = {}
    for a in at:
        per_second[int(a - at[0])] = per_second.get(int(a - at[0]), 0) + 1
    full = [c for s, c in per_second.items() if 0 < s < max(per_second)]  # whole seconds only
    return {
        "n": n,
        "seconds": t1 - t0,
        "enqueue": enqueued,
        "rate": n / (t1 - t0),
        "records": len(records),
        "ok": len(ok),
        "errors": len(records) - len(ok),
        "kept_before": before,
        "sandbox_rate": (len(at) - 1) / (at[-1] - at[0]) if len(at) > 1 else float("nan"),
        "sandbox_span": at[-1] - at[0] if at else 0.0,
        "per_second_min": min(full) if full else None,
        "per_second_max": max(full) if full else None,
    }


def py_spy(setup: Setup, seconds: float) -> Proc:
    """Sample the server with py-spy (pip install py-spy; not a project dependency)."""
    exe = shutil.which("py-spy") or str(Path(PYTHON).parent / "py-spy")
    pid = str(setup.procs["server"].p.pid)
    argv = [exe, "record", "-p", pid, "-d", str(int(seconds)), "-r", "250", "-f", "raw"]
    return Proc("py-spy", [*argv, "-o", str(setup.tmp / "server.spy")], setup.tmp / "spy.log")


def top_frames(path: Path, n: int = 25) -> str:
    """Inclusive share of samples per function (file:function), from py-spy's raw stacks."""
    total = 0
    inclusive: dict[str, int] = {}
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        total += int(count)
        seen = set()
        for frame in stack.split(";"):
            name = re.sub(r" \((.*/)?([^/]+\.py):\d+\)", r" (\2)", frame)
            if name not in seen:
                seen.add(name)
                inclusive[name] = inclusive.get(name, 0) + int(count)
    rows = sorted(inclusive.items(), key=lambda kv: -kv[1])[:n]
    return f"{total} samples\n" + "\n".join(f"    {c / total:6.1%}  {f}" for f, c in rows)


def self_frames(path: Path, n: int = 12) -> str:
    """Where the samples end (the innermost frame): by package, then the busiest functions.

    Samples of a thread-pool worker blocked in ``work_queue.get`` (py-spy does not always see that
    thread as idle) are left out and counted apart."""
    total = waiting = 0
    packages: dict[str, int] = {}
    functions: dict[str, int] = {}
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        leaf = stack.split(";")[-1]
        if leaf.startswith("_worker (concurrent/futures/thread.py"):
            waiting += int(count)
            continue
        m = re.search(r"\(([^()]*):\d+\)$", leaf)
        parts = (m.group(1) if m else leaf).split("/")
        deep = parts[0] in ("bot", "channels") and len(parts) > 2
        package = "/".join(parts[:2]) if deep else parts[0].removesuffix(".py")
        total += int(count)
        packages[package] = packages.get(package, 0) + int(count)
        name = re.sub(r":\d+\)", ")", leaf)
        functions[name] = functions.get(name, 0) + int(count)
    out = [f"{total} samples (+{waiting} of an idle pool thread); innermost frame by package:"]
    for rows in (packages, functions):
        top = sorted(rows.items(), key=lambda kv: -kv[1])[:n]
        out += [f"    {c / total:6.1%}  {name}" for name, c in top]
        out.append("  busiest functions (self):")
    return "\n".join(out[:-1])


def generator_session(connections: int) -> aiohttp.ClientSession:
    """The load generator's HTTP client: ``connections`` sockets, 30 s per request."""
    timeout = aiohttp.ClientTimeout(total=30)
    return aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=connections))


# -- main ----------------------------------------------------------------------------------------
async def main(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="chqw", dir="/tmp"))
    setup = Setup(tmp, free_port(), free_port(), args.processes)
    redis: Redis | None = None
    try:
        async with generator_session(args.connections) as http:
            await setup.start_sandbox(http, statuses=True)
            await setup.start_server(http, max_mps=0)
            redis = await redis_of(tmp)
            store = Store(redis)
            info = await redis.info("server")
            print("machine")
            print(f"  CPU       {cpu_model()} x {os.cpu_count()} cores")
            print(f"  Python    {platform.python_version()} ({platform.python_implementation()})")
            version = info.get("valkey_version") or info.get("redis_version")
            print(f"  Valkey    {version} (embedded, started by the server)")
            print(
                f"  aiohttp   {aiohttp.__version__}, load generator connections {args.connections}"
            )
            print(f"  tmp       {tmp}")

            print(f"\nsetup: {args.senders} senders write once and wait in the echo flow ...")
            await prepare_senders(http, setup, store, args.senders)

            phases = [
                Phase(rate, int(rate * duration), f"r{int(rate)}")
                for rate, duration in (
                    (20.0, min(args.duration, 10.0)),
                    (200.0, args.duration),
                    (500.0, args.duration),
                )
            ]
            offset = 0
            for phase in phases:
                bodies = build_bodies(phase, args.senders, offset)
                offset += phase.count
                print(f"  {phase.rate:.0f}/s x {phase.count} webhooks ...", flush=True)
                spy = None
                if args.profile_server and phase.rate == args.profile_server:
                    spy = py_spy(setup, phase.count / phase.rate)
                pids = setup.pids()
                before = {name: cpu_seconds(pid) for name, pid in pids.items()}
                w0 = time.monotonic()
                await run_phase(http, setup.webhook_url, phase, bodies)
                span = await drained(redis) - w0
                phase.cpu = {n: (cpu_seconds(pid) - before[n]) / span for n, pid in pids.items()}
                if spy is not None:
                    spy.p.wait(30)
                    print(f"  py-spy: {top_frames(tmp / 'server.spy')}")
                await drained(redis)
                await sandbox_quiet(http, setup)
                phase.latencies, phase.missing = reply_latencies(
                    phase, await sandbox_sent(http, setup)
                )
                await asyncio.sleep(1)

            print("\n1. webhook acknowledgement latency (POST -> 200, from the scheduled time)")
            for phase in phases:
                print(f"  {phase.rate:5.0f}/s  {summary(phase.acks)}")
                print(
                    f"          answers {dict(sorted(phase.statuses.items()))}, "
                    f"generator lag max {phase.max_lag * 1000:.1f} ms, "
                    f"achieved {phase.count / phase.elapsed:.0f}/s"
                )
                busy = ", ".join(f"{n} {c:.0%}" for n, c in sorted(phase.cpu.items()))
                print(f"          CPU busy (share of one core, until drained): {busy}")
            print("\n2. reply webhook POSTed -> its answer received by the sandbox")
            for phase in phases:
                print(f"  {phase.rate:5.0f}/s  {summary(phase.latencies)}  missing {phase.missing}")

            # part 3: template sends; the sandbox without statuses, the server's limit off
            print(f"\n3. template sends: {args.template_contacts} contacts started in 'tpl' ...")
            setup.stop("sandbox")
            await setup.start_sandbox(http, statuses=False)
            runs = []
            for rep in range(args.reps):
                result = await template_run(
                    http, setup, store, f"t{rep:03d}", args.template_contacts
                )
                runs.append(result)
                print(
                    f"  rep {rep + 1}: {result['rate']:,.0f} sends/s end to end "
                    f"({result['n']} in {result['seconds']:.2f} s, enqueue took "
                    f"{result['enqueue']:.2f} s); sandbox-side {result['sandbox_rate']:,.0f}/s "
                    f"over its last {result['ok']} records, per-second "
                    f"[{result['per_second_min']} .. {result['per_second_max']}], "
                    f"errors {result['errors']}",
                    flush=True,
                )

            print(f"\n   max_mps = 80: {args.mps_contacts} contacts ...")
            setup.stop("server")
            await redis.aclose()
            await setup.start_server(http, max_mps=80)
            redis = await redis_of(tmp)
            store = Store(redis)
            limited = await template_run(http, setup, store, "m000", args.mps_contacts)
            print(
                f"  {limited['sandbox_rate']:.1f} sends/s measured at the sandbox over "
                f"{limited['sandbox_span']:.1f} s ({limited['ok']} sends; whole seconds "
                f"[{limited['per_second_min']} .. {limited['per_second_max']}]); end to end "
                f"{limited['rate']:.1f}/s; deviation from 80: "
                f"{(limited['sandbox_rate'] / 80 - 1) * 100:+.1f} %"
            )
            rates = sorted(r["rate"] for r in runs)
            print(
                f"\n   template sends/s, rate limit off: median {rates[len(rates) // 2]:,.0f} "
                f"[{rates[0]:,.0f} .. {rates[-1]:,.0f}] over {len(rates)} rep(s)"
            )
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
    p.add_argument("--senders", type=int, default=3000, help="distinct senders of webhooks")
    p.add_argument("--duration", type=float, default=15.0, help="seconds per webhook rate")
    p.add_argument("--template-contacts", type=int, default=10_000, help="template sends per rep")
    p.add_argument("--reps", type=int, default=3, help="template send runs")
    p.add_argument("--mps-contacts", type=int, default=880, help="sends at max_mps = 80 (~10 s)")
    p.add_argument("--connections", type=int, default=512, help="load generator connections")
    p.add_argument(
        "--profile-server", type=float, default=0, help="py-spy the server at this webhook rate"
    )
    p.add_argument(
        "--processes",
        type=int,
        default=1,
        help="server processes (server.processes); --baseline: one process first, then a search"
        " with this many, unpinned",
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    p.add_argument("--quick", action="store_true", help="short run: 500 senders, 3 s, 2k sends")
    p.add_argument(
        "--baseline", action="store_true", help="issue 12: the stateless echo bot vs Chasqui"
    )
    p.add_argument(
        "--rates",
        default=None,
        help="--baseline: fixed webhook rates per second, comma-separated (default 100,300;"
        " none with --search)",
    )
    p.add_argument(
        "--no-monitor",
        dest="monitor",
        action="store_false",
        help="--baseline: skip the last pass under MONITOR (commands per message)",
    )
    b = p.add_argument_group("--baseline, issue 12's sustained rate (bench/baseline.py)")
    b.add_argument(
        "--pin",
        action="store_true",
        help="each bot (Chasqui: server + its Valkey) on core 0; generator, sandbox on core 1",
    )
    b.add_argument(
        "--search",
        action="store_true",
        help="search each bot's sustained rate, then measure at 50/90/110 %% of Chasqui's",
    )
    b.add_argument("--max-rate", type=float, default=4000.0, help="the search's highest rate")
    b.add_argument("--search-start", type=float, default=100.0, help="the search's first rate")
    b.add_argument("--step-seconds", type=float, default=4.0, help="seconds per search step")
    b.add_argument(
        "--search-budget", type=float, default=240.0, help="seconds of search per bot, at most"
    )
    b.add_argument(
        "--precision", type=float, default=0.1, help="stop bisecting when hi - lo <= this x hi"
    )
    b.add_argument("--generators", type=int, default=1, help="load generator processes")
    b.add_argument(
        "--client",
        choices=("aiohttp", "raw"),
        default=None,
        help="the generator's HTTP client: aiohttp's, or a minimal one at ~40 %% of its CPU per"
        " POST (default: raw with --search, else aiohttp)",
    )
    b.add_argument("--retries", type=int, default=1, help="run a failed step again this many times")
    args = p.parse_args(argv)
    if args.client is None:
        args.client = "raw" if args.search else "aiohttp"
    if args.rates is None:
        args.rates = "" if args.search else "100,300"
    args.rates = [float(r) for r in args.rates.split(",") if r]
    if args.quick:
        args.senders, args.duration = 500, 3.0
        args.template_contacts, args.reps, args.mps_contacts = 2000, 1, 400
    return args


if __name__ == "__main__":
    parsed = parse_args()
    if parsed.baseline:
        from baseline import baseline  # bench/baseline.py imports this module: import it late

        asyncio.run(baseline(parsed))
    else:
        asyncio.run(main(parsed))
