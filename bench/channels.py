"""Benchmark: inbound -> reply on each channel, the same way, on the same machine.

For each channel case, in turn, on loopback and in a temporary directory:
- the provider's stand-in as its own process (Telegram: ``python -m tests.support.telegram``;
  WhatsApp: ``chasqui sandbox``, without status webhooks and limits);
- ``chasqui serve`` (embedded Valkey, one process) with that one channel pointed at the stand-in,
  its rate limits off (we measure Chasqui, not the provider's limits), and an ``echo`` flow: wait
  for a reply, answer ``Recibido: <text>``, wait again;
- this process as the load generator: ``--senders`` contacts write once and are started in
  ``echo``; then, open loop, at each rate for ``--duration`` seconds, a webhook with a text
  from the next sender, as the provider would post it (signed, or with the secret header).

Prints per case and rate: the webhook acknowledgement latency (p50/p99), the time from POSTing a
message to the stand-in receiving its answer (p50/p99), the answers per second the stand-in
received, and answers missing. A case is a :class:`Case`: a channel section, a stand-in to start,
an inbound webhook to build and a way to read the answers back; add one to :data:`CASES`.

``telegram_limited`` keeps Telegram's limits on (30 sends/s per bot, 1/s per chat after a
burst of 3): its answers/s shows the bot's limit holding.

Usage:  .venv/bin/python bench/channels.py [--quick] [--cases telegram,whatsapp,http] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from whatsapp import (  # bench/whatsapp.py: the processes and measuring helpers
    Proc,
    cpu_model,
    drained,
    free_port,
    gather_chunks,
    redis_of,
    summary,
    wait_http,
)

from bot.store import Store
from bot.store.keys import urn_key
from channels.whatsapp.sandbox import demo_config, encode, sign
from channels.whatsapp.sandbox.config import (
    DEMO_ACCESS_TOKEN,
    DEMO_APP_SECRET,
    DEMO_PHONE_NUMBER_ID,
    DEMO_VERIFY_TOKEN,
    DEMO_WABA_ID,
)
from channels.whatsapp.sandbox.inbound import build_message
from channels.whatsapp.sandbox.state import SandboxState
from channels.whatsapp.sandbox.webhooks import inbound_value, messages_envelope
from tests.support.receiver import SECRET as HTTP_SECRET
from tests.support.receiver import signature as http_signature

PYTHON = sys.executable
ADMIN = "bench-admin-token"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
ANSWER = re.compile(r"Recibido: (\w+)-(\d+) hola")
ECHO_FLOW = """\
name: Bench echo
nodes:
  - id: wait
    wait_for_reply:
      result: said
      other: {category: Other, next: answer}
  - id: answer
    send_message:
      text: "Recibido: @input.text"
    next: wait
"""


class Case:
    """One channel as the bench drives it."""

    name = ""  # the case, and the configured channel's name
    type_name = ""  # its channel type

    def __init__(self, stand_in_port: int) -> None:
        self.port = stand_in_port
        self.stand_in = f"http://127.0.0.1:{stand_in_port}"

    def section(self) -> dict[str, Any]:
        """The ``[channels.<name>]`` settings, pointing at the stand-in, limits off."""
        raise NotImplementedError

    def stand_in_argv(self, webhook_url: str) -> list[str]:
        raise NotImplementedError

    ready_path = "/"  # a GET the stand-in answers once it is up

    def urn(self, i: int) -> str:
        raise NotImplementedError

    def inbound(self, i: int, text: str) -> tuple[bytes, dict[str, str]]:
        """One webhook from sender ``i`` saying ``text``: its body and headers."""
        raise NotImplementedError

    async def answers(self, http: aiohttp.ClientSession) -> list[tuple[str, float]]:
        """The texts the stand-in accepted from us, with the time it got each."""
        raise NotImplementedError


class TelegramCase(Case):
    name = type_name = "telegram"
    TOKEN = "7001234567:bench-token"
    SECRET = "bench-secret"
    ready_path = "/_fake/calls?since=9e99"

    def __init__(self, stand_in_port: int) -> None:
        super().__init__(stand_in_port)
        self.updates = 730000000

    def section(self) -> dict[str, Any]:
        return {
            "type": "telegram",
            "bot_token": self.TOKEN,
            "secret_token": self.SECRET,
            "api_url": self.stand_in,
            "max_mps": 0,
            "chat_mps": 0,
            "concurrency": 64,
        }

    def stand_in_argv(self, webhook_url: str) -> list[str]:
        port, token = str(self.port), self.TOKEN
        return [PYTHON, "-m", "tests.support.telegram", "--port", port, "--token", token]

    def urn(self, i: int) -> str:
        return f"telegram:{6100000000 + i}"

    def inbound(self, i: int, text: str) -> tuple[bytes, dict[str, str]]:
        self.updates += 1
        chat = {"id": 6100000000 + i, "type": "private", "first_name": f"Ana {i}"}
        update = {
            "update_id": self.updates,
            "message": {
                "message_id": self.updates,
                "from": {"id": chat["id"], "is_bot": False, "first_name": f"Ana {i}"},
                "chat": chat,
                "date": int(time.time()),
                "text": text,
            },
        }
        headers = {
            "Content-Type": "application/json",
            "X-Telegram-Bot-Api-Secret-Token": self.SECRET,
        }
        return encode(update), headers

    async def answers(self, http: aiohttp.ClientSession) -> list[tuple[str, float]]:
        async with http.get(f"{self.stand_in}/_fake/calls") as r:
            data = (await r.json())["data"]
        return [
            (str(c["body"].get("text", "")), float(c["at"]))
            for c in data
            if c["method"] == "sendMessage" and c["status"] == 200
        ]


class TelegramLimitedCase(TelegramCase):
    """Telegram with its default limits on (30 sends/s for the bot, 1/s per chat after 3)."""

    name = "telegram_limited"

    def section(self) -> dict[str, Any]:
        limits = ("max_mps", "chat_mps")
        return {k: v for k, v in super().section().items() if k not in limits}


class WhatsAppCase(Case):
    name = type_name = "whatsapp"
    ready_path = "/_fake/clock"

    def __init__(self, stand_in_port: int) -> None:
        super().__init__(stand_in_port)
        self.state = SandboxState(demo_config(""))  # our own wamid counter
        self.number = self.state.config.numbers[0]

    def section(self) -> dict[str, Any]:
        return {
            "type": "whatsapp",
            "graph_url": self.stand_in,
            "phone_number_id": DEMO_PHONE_NUMBER_ID,
            "waba_id": DEMO_WABA_ID,
            "access_token": DEMO_ACCESS_TOKEN,
            "app_secret": DEMO_APP_SECRET,
            "verify_token": DEMO_VERIFY_TOKEN,
            "max_mps": 0,
        }

    def stand_in_argv(self, webhook_url: str) -> list[str]:
        return [
            *(PYTHON, "-m", "bot.cli", "sandbox", "--port", str(self.port)),
            *("--admin-token", ADMIN, "--webhook-url", webhook_url, "--max-mps", "0"),
            *("--no-pair-rate", "--no-statuses", "--record-limit", "100000"),
        ]

    def urn(self, i: int) -> str:
        return f"whatsapp:+549110{i:07d}"

    def inbound(self, i: int, text: str) -> tuple[bytes, dict[str, str]]:
        spec = {"from": f"549110{i:07d}", "name": f"Ana {i}", "text": text}
        contact, message = build_message(self.state, self.number, spec)
        raw = encode(
            messages_envelope(DEMO_WABA_ID, [inbound_value(self.number, [contact], [message])])
        )
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature-256": sign(raw, DEMO_APP_SECRET),
        }
        return raw, headers

    async def answers(self, http: aiohttp.ClientSession) -> list[tuple[str, float]]:
        async with http.get(f"{self.stand_in}/_fake/sent", headers=AUTH) as r:
            data = (await r.json())["data"]
        out = []
        for record in data:
            body = record.get("body") if isinstance(record.get("body"), dict) else {}
            if record.get("http_status") == 200 and body.get("type") == "text":
                out.append((str(body["text"]["body"]), float(record["at"])))
        return out


class HttpCase(Case):
    """The signed HTTP channel; its stand-in is tests/support/receiver.py, which checks each
    post's signature (an answer counts only when it holds)."""

    name = type_name = "http"
    ready_path = "/posts"

    def __init__(self, stand_in_port: int) -> None:
        super().__init__(stand_in_port)
        self.sent = 0

    def section(self) -> dict[str, Any]:
        return {
            "type": "http",
            "send_url": f"{self.stand_in}/chasqui",
            "secret": HTTP_SECRET,
            "allow_private": True,  # the stand-in is on loopback
            "concurrency": 64,
        }

    def stand_in_argv(self, webhook_url: str) -> list[str]:
        return [PYTHON, "-m", "tests.support.receiver", "--port", str(self.port)]

    def urn(self, i: int) -> str:
        return f"ext:bench-{i}"

    def inbound(self, i: int, text: str) -> tuple[bytes, dict[str, str]]:
        self.sent += 1
        webhook_id = f"msg_bench_{self.sent}"
        raw = encode({"id": webhook_id, "from": f"bench-{i}", "text": text, "name": f"Ana {i}"})
        stamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": http_signature(webhook_id, stamp, raw),
        }
        return raw, headers

    async def answers(self, http: aiohttp.ClientSession) -> list[tuple[str, float]]:
        async with http.get(f"{self.stand_in}/posts") as r:
            data = await r.json()
        return [
            (str(p["body"]["text"]), float(p["at"]))
            for p in data
            if p["verified"] and p["status"] == 200
        ]


CASES: dict[str, type[Case]] = {
    "telegram": TelegramCase,
    "whatsapp": WhatsAppCase,
    "http": HttpCase,
    "telegram_limited": TelegramLimitedCase,
}


@dataclass
class Phase:
    rate: float
    count: int
    tag: str
    acks: list[float] = field(default_factory=list)
    posted: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    throughput: float = 0.0
    missing: int = 0


def write_config(tmp: Path, port: int, case: Case) -> Path:
    flows = tmp / "flows"
    flows.mkdir(exist_ok=True)
    (flows / "echo.yaml").write_text(ECHO_FLOW)
    lines = [
        "[server]",
        'host = "127.0.0.1"',
        f"port = {port}",
        f'admin_token = "{ADMIN}"',
        "[redis]",
        'url = ""',
        f'data_dir = "{tmp / "var"}"',
        "[flows]",
        f'path = "{flows}"',
        "[engine]",
        "loop_repeats = 1000",
        f"[channels.{case.name}]",
    ]
    for key, value in case.section().items():
        lines.append(f"{key} = {json.dumps(value)}")  # a TOML string, number or boolean
    path = tmp / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def post_all(
    http: aiohttp.ClientSession, url: str, phase: Phase, bodies: list[tuple[bytes, dict[str, str]]]
) -> None:
    """POST the bodies at ``phase.rate`` per second, open loop; ack latency from the schedule."""
    loop = asyncio.get_running_loop()
    phase.acks, phase.posted = [0.0] * phase.count, [0.0] * phase.count
    t0 = loop.time() + 0.1

    async def one(i: int, due: float) -> None:
        raw, headers = bodies[i]
        phase.posted[i] = time.time()
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
        if (delay := due - loop.time()) > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.wait(tasks, timeout=60)


async def run_case(
    case_type: type[Case], args: argparse.Namespace, http: aiohttp.ClientSession
) -> list[Phase]:
    tmp = Path(tempfile.mkdtemp(prefix=f"chq-{case_type.name}-", dir="/tmp"))
    case = case_type(free_port())
    port = free_port()
    server = f"http://127.0.0.1:{port}"
    webhook = f"{server}/webhooks/{case.type_name}/{case.name}"
    procs: list[Proc] = []
    redis = None
    try:
        stand_in = Proc("stand-in", case.stand_in_argv(webhook), tmp / "stand-in.log")
        procs.append(stand_in)
        await wait_http(http, case.stand_in + case.ready_path, stand_in)
        config = write_config(tmp, port, case)
        serve = Proc(
            "server",
            [PYTHON, "-m", "bot.cli", "--config", str(config), "serve"],
            tmp / "server.log",
        )
        procs.append(serve)
        await wait_http(http, f"{server}/healthz", serve, limit=60)
        redis = await redis_of(tmp)
        store = Store(redis)
        # every sender writes once (a new contact), then waits in the echo flow
        await gather_chunks(
            _post(http, webhook, *case.inbound(i, "hola")) for i in range(args.senders)
        )
        await drained(redis)
        raw = await redis.mget([urn_key(case.urn(i)) for i in range(args.senders)])
        cids = [r.decode() for r in raw if r]
        if len(cids) != args.senders:
            raise SystemExit(f"{case.name}: {args.senders - len(cids)} senders have no contact")
        now = time.time()
        await gather_chunks(
            store.enqueue(cid, {"type": "start", "flow": "echo", "at": now}) for cid in cids
        )
        await drained(redis)
        phases = [Phase(rate, int(rate * args.duration), f"r{int(rate)}") for rate in args.rates]
        offset = 0
        for phase in phases:
            print(f"  {case.name}: {phase.rate:.0f}/s x {phase.count} ...", flush=True)
            bodies = [
                case.inbound((offset + i) % args.senders, f"{phase.tag}-{i} hola")
                for i in range(phase.count)
            ]
            offset += phase.count
            await post_all(http, webhook, phase, bodies)
            await drained(redis)
            got = {}
            for text, at in await case.answers(http):
                m = ANSWER.match(text)
                if m and m.group(1) == phase.tag:
                    got[int(m.group(2))] = at
            phase.latencies = [at - phase.posted[i] for i, at in got.items()]
            phase.missing = phase.count - len(got)
            if got:
                span = max(got.values()) - min(phase.posted)
                phase.throughput = len(got) / span if span > 0 else float("nan")
            await asyncio.sleep(1)
        return phases
    finally:
        if redis is not None:
            await redis.aclose()
        for proc in reversed(procs):
            proc.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"  kept {tmp}")


async def _post(http: aiohttp.ClientSession, url: str, raw: bytes, headers: dict[str, str]) -> None:
    async with http.post(url, data=raw, headers=headers) as r:
        if r.status != 200:
            raise SystemExit(f"setup webhook refused: {r.status} {await r.text()}")


async def main(args: argparse.Namespace) -> None:
    print(f"machine: {cpu_model()}; senders {args.senders}, {args.duration:.0f} s per rate")
    timeout = aiohttp.ClientTimeout(total=30)
    results: list[tuple[str, list[Phase]]] = []
    async with aiohttp.ClientSession(
        timeout=timeout, connector=aiohttp.TCPConnector(limit=args.connections)
    ) as http:
        for _ in range(args.rounds):  # rounds alternate the cases: a busy spell hits each
            for name in args.cases:
                results.append((name, await run_case(CASES[name], args, http)))
    print("\ninbound webhook -> the flow's answer at the provider's stand-in")
    for name, phases in results:
        for p in phases:
            print(f"  {name:<9} {p.rate:5.0f}/s  ack {summary(p.acks)}")
            print(
                f"  {'':<9} {'':>7}  reply {summary(p.latencies)}  "
                f"{p.throughput:6.0f} answers/s  missing {p.missing}  answers {p.statuses}"
            )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--cases", default="telegram,whatsapp,http", help="comma-separated: " + ", ".join(CASES)
    )
    p.add_argument(
        "--rounds", type=int, default=1, help="run the cases this many times, alternating"
    )
    p.add_argument("--senders", type=int, default=2000)
    p.add_argument("--duration", type=float, default=10.0, help="seconds per rate")
    p.add_argument("--rates", default="20,200,500", help="webhooks per second, comma-separated")
    p.add_argument("--connections", type=int, default=512)
    p.add_argument("--keep", action="store_true", help="keep the temporary directories (logs)")
    p.add_argument("--quick", action="store_true", help="500 senders, 3 s per rate")
    args = p.parse_args(argv)
    args.cases = [c for c in args.cases.split(",") if c]
    unknown = [c for c in args.cases if c not in CASES]
    if unknown:
        p.error(f"unknown case(s) {unknown}: {', '.join(CASES)}")
    args.rates = [float(r) for r in args.rates.split(",")]
    if args.quick:
        args.senders, args.duration = 500, 3.0
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
