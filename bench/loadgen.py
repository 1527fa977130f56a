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
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

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


async def _fire(url: str, bodies: list[Body], t0: float, rate: float, connections: int) -> Shot:
    if "http" not in _state:
        timeout = aiohttp.ClientTimeout(total=30)
        # a server closes kept-alive connections it finds idle, and a POST racing that close
        # fails; the generator pauses between steps: it drops its idle sockets first
        connector = aiohttp.TCPConnector(limit=connections, keepalive_timeout=5)
        _state["http"] = aiohttp.ClientSession(timeout=timeout, connector=connector)
    http: aiohttp.ClientSession = _state["http"]
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
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": signature}
        try:
            async with http.post(url, data=raw, headers=headers) as r:
                await r.read()
                status = r.status
        except (aiohttp.ClientError, TimeoutError) as e:
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


def fire(url: str, bodies: list[Body], t0: float, rate: float, connections: int) -> Shot:
    """In a generator process: POST ``bodies`` on schedule, return what happened."""
    return _loop().run_until_complete(_fire(url, bodies, t0, rate, connections))


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

    def __init__(self, processes: int, connections: int) -> None:
        context = multiprocessing.get_context("spawn")
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
        args = [(url, shard, t0, rate, self.connections) for shard in shards]
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
