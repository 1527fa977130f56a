"""The open-loop load generator of bench/baseline.py, in processes of its own.

Each generator process keeps one aiohttp session (kept-alive connections) and POSTs its share of
a step's prepared bodies at their scheduled times: body ``i`` is due at ``t0 + i / rate`` on
``time.monotonic()`` (CLOCK_MONOTONIC, the same clock in every process of the machine). With N
processes, process ``k`` sends the bodies ``i`` with ``i % N == k``. Each one reports, per body,
the acknowledgement latency from the scheduled time, the wall-clock time its POST started (for the
reply latency) and how late it started (the generator's own lag), and its CPU seconds.

Processes are spawned (not forked: the parent runs an event loop) and inherit the parent's CPU
affinity, so pinning the bench pins its generators.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import re
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp

Body = tuple[int, bytes, str]  # index in the step, raw JSON, X-Hub-Signature-256

_state: dict[str, Any] = {}  # per generator process: its event loop and session


@dataclass
class Shot:
    """One generator process's part of a step."""

    index: list[int] = field(default_factory=list)
    acks: list[float] = field(default_factory=list)  # scheduled time -> HTTP answer
    posted: list[float] = field(default_factory=list)  # wall clock when the POST started
    lags: list[float] = field(default_factory=list)  # POST start - scheduled time
    statuses: dict[int, int] = field(default_factory=dict)  # -1: connection error or timeout
    errors: dict[str, int] = field(default_factory=dict)  # the -1s by exception
    cpu: float = 0.0  # CPU seconds of this process over its part
    last_start: float = 0.0  # monotonic time the last POST started


def _loop() -> asyncio.AbstractEventLoop:
    if "loop" not in _state:
        _state["loop"] = asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = _state["loop"]
    return loop


class _Aiohttp:
    """aiohttp's client: what a Python webhook sender would use."""

    def __init__(self, connections: int) -> None:
        timeout = aiohttp.ClientTimeout(total=30)
        # a server closes kept-alive connections it finds idle, and a POST racing that close
        # fails; the generator pauses between steps: it drops its idle sockets first
        connector = aiohttp.TCPConnector(limit=connections, keepalive_timeout=5)
        self.http = aiohttp.ClientSession(timeout=timeout, connector=connector)

    async def post(self, url: str, raw: bytes, signature: str) -> int:
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": signature}
        async with self.http.post(url, data=raw, headers=headers) as r:
            await r.read()
            return r.status

    async def close(self) -> None:
        await self.http.close()


class _Connection(asyncio.Protocol):
    """One kept-alive HTTP/1.1 connection, one request at a time; answers need Content-Length."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.answer: asyncio.Future[int] | None = None
        self.closed = False
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buf[:end].lower()
        m = _LENGTH.search(head)
        if m is None:
            self._fail(ConnectionError("an answer without Content-Length"))
            return
        if len(self.buf) < end + 4 + int(m.group(1)):
            return
        self.buf = self.buf[end + 4 + int(m.group(1)) :]
        if b"\r\nconnection: close" in head and self.transport is not None:
            self.closed = True
            self.transport.close()
        if self.answer is not None and not self.answer.done():
            self.answer.set_result(int(head[9:12]))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or ConnectionResetError("closed by the server"))

    def _fail(self, exc: Exception) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        if self.answer is not None and not self.answer.done():
            self.answer.set_exception(exc)


_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)")


class _Raw:
    """A minimal HTTP/1.1 client on asyncio's protocols: about a quarter of aiohttp's CPU per
    POST, so that the driving side costs the least it can. Same open-loop use as aiohttp's."""

    def __init__(self, connections: int) -> None:
        self.idle: dict[str, list[_Connection]] = {}  # by host:port
        self.room = asyncio.Semaphore(connections)

    async def post(self, url: str, raw: bytes, signature: str) -> int:
        parts = urlsplit(url)
        request = (
            f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Type: application/json\r\nX-Hub-Signature-256: {signature}\r\n"
            f"Content-Length: {len(raw)}\r\n\r\n"
        ).encode() + raw
        async with self.room:
            loop = asyncio.get_running_loop()
            now = loop.time()
            conn = None
            idle = self.idle.setdefault(parts.netloc, [])
            while idle:
                candidate = idle.pop()
                if not candidate.closed and now - candidate.idle_since < 5:
                    conn = candidate
                    break
                if candidate.transport is not None:
                    candidate.transport.close()
            if conn is None:
                _, conn = await loop.create_connection(
                    _Connection, parts.hostname or "127.0.0.1", parts.port or 80
                )
            assert conn.transport is not None
            conn.answer = loop.create_future()
            conn.transport.write(request)
            try:
                status = await asyncio.wait_for(conn.answer, 30)
            except BaseException:
                conn.closed = True
                conn.transport.close()
                raise
            if not conn.closed:
                conn.idle_since = loop.time()
                idle.append(conn)
            return status

    async def close(self) -> None:
        for conn in (c for idle in self.idle.values() for c in idle):
            if conn.transport is not None:
                conn.transport.close()
        self.idle = {}


async def _fire(
    url: str, bodies: list[Body], t0: float, rate: float, connections: int, client: str
) -> Shot:
    if "http" not in _state:
        _state["http"] = _Raw(connections) if client == "raw" else _Aiohttp(connections)
    http: _Raw | _Aiohttp = _state["http"]
    loop = asyncio.get_running_loop()
    shot = Shot(index=[i for i, _, _ in bodies])
    n = len(bodies)
    shot.acks, shot.posted, shot.lags = [0.0] * n, [0.0] * n, [0.0] * n

    async def one(k: int, due: float) -> None:
        _, raw, signature = bodies[k]
        started = loop.time()
        shot.lags[k] = started - due
        shot.last_start = max(shot.last_start, started)
        shot.posted[k] = time.time()
        try:
            status = await http.post(url, raw, signature)
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            status = -1
            what = f"{type(e).__name__}: {str(e)[:60]}"
            shot.errors[what] = shot.errors.get(what, 0) + 1
        shot.acks[k] = loop.time() - due
        shot.statuses[status] = shot.statuses.get(status, 0) + 1

    cpu0 = time.process_time()
    tasks = []
    for k, (i, _, _) in enumerate(bodies):
        due = t0 + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(k, due)))
    if tasks:
        await asyncio.wait(tasks)
    shot.cpu = time.process_time() - cpu0
    return shot


def fire(
    url: str, bodies: list[Body], t0: float, rate: float, connections: int, client: str
) -> Shot:
    """In a generator process: POST ``bodies`` on schedule, return what happened."""
    return _loop().run_until_complete(_fire(url, bodies, t0, rate, connections, client))


def close() -> None:
    if "http" in _state:
        _loop().run_until_complete(_state.pop("http").close())


@dataclass
class Step:
    """A whole step, merged from every generator process."""

    rate: float
    count: int
    acks: list[float]
    posted: list[float]
    lags: list[float]  # sorted
    statuses: dict[int, int]
    errors: dict[str, int]
    cpu: float  # CPU seconds of all generator processes
    elapsed: float  # first due -> last POST started
    processes: int

    @property
    def achieved(self) -> float:
        """POSTs started per second, as the generator managed them."""
        return self.count / max(self.elapsed + 1 / self.rate, 1e-9)


class Generator:
    """``processes`` generator processes, each with ``connections / processes`` sockets."""

    def __init__(self, processes: int, connections: int, client: str = "aiohttp") -> None:
        context = multiprocessing.get_context("spawn")
        self.client = client
        self.processes = processes
        self.connections = max(1, connections // processes)
        self.pools = [ProcessPoolExecutor(1, mp_context=context) for _ in range(processes)]
        self.pids: list[int] = []

    async def start(self) -> list[int]:
        loop = asyncio.get_running_loop()
        self.pids = list(
            await asyncio.gather(*(loop.run_in_executor(p, os.getpid) for p in self.pools))
        )
        return self.pids

    async def run(self, url: str, bodies: list[tuple[bytes, str]], rate: float) -> Step:
        loop = asyncio.get_running_loop()
        n = self.processes
        shards = [[(i, *bodies[i]) for i in range(k, len(bodies), n)] for k in range(n)]
        # time to hand the bodies over (pickled through a pipe) before the first one is due
        t0 = time.monotonic() + 0.3 + len(bodies) * 2e-6
        args = [(url, shard, t0, rate, self.connections, self.client) for shard in shards]
        shots = await asyncio.gather(
            *(
                loop.run_in_executor(pool, fire, *a)
                for pool, a in zip(self.pools, args, strict=True)
            )
        )
        count = len(bodies)
        acks, posted = [0.0] * count, [0.0] * count
        lags: list[float] = []
        statuses: dict[int, int] = {}
        errors: dict[str, int] = {}
        for shot in shots:
            for k, i in enumerate(shot.index):
                acks[i], posted[i] = shot.acks[k], shot.posted[k]
            lags += shot.lags
            for status, c in shot.statuses.items():
                statuses[status] = statuses.get(status, 0) + c
            for name, c in shot.errors.items():
                errors[name] = errors.get(name, 0) + c
        last = max(shot.last_start for shot in shots)
        return Step(
            rate,
            count,
            acks,
            posted,
            sorted(lags),
            statuses,
            errors,
            sum(s.cpu for s in shots),
            last - t0,
            n,
        )

    async def stop(self) -> None:
        loop = asyncio.get_running_loop()
        for pool in self.pools:
            with_timeout = asyncio.wait_for(loop.run_in_executor(pool, close), 10)
            with contextlib.suppress(TimeoutError, OSError):
                await with_timeout
            pool.shutdown(wait=True, cancel_futures=True)
