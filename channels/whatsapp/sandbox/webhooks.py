"""Webhooks from the sandbox: Meta's envelopes, Meta's bytes, signed, delivered, redelivered.

Everything that should reach Chasqui later (statuses, template reviews, redeliveries) is a job
on one heap, run by one background task. Statuses due together go in one POST (Meta batches
too), up to ``max_batch``. ``flush()`` runs every pending job now, in due order and one POST
each, and waits for the deliveries: tests use it instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import hmac
import itertools
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from channels.whatsapp.sandbox.config import SandboxConfig, SandboxNumber

log = logging.getLogger("chasqui.sandbox")

OBJECT = "whatsapp_business_account"


def encode(obj: Any) -> bytes:
    """Meta's serialisation: compact, ``\\uXXXX`` for non-ASCII, ``\\/`` for ``/``."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True).replace("/", "\\/").encode()


def sign(raw: bytes, app_secret: str) -> str:
    """The ``X-Hub-Signature-256`` header value for these exact bytes."""
    return "sha256=" + hmac.new(app_secret.encode(), raw, hashlib.sha256).hexdigest()


def metadata(number: SandboxNumber) -> dict[str, str]:
    return {
        "display_phone_number": number.display_phone_number,
        "phone_number_id": number.phone_number_id,
    }


def messages_envelope(waba_id: str, changes: list[dict[str, Any]]) -> dict[str, Any]:
    """``{"object", "entry": [{"id", "changes": [{"value", "field": "messages"}]}]}``."""
    return {
        "object": OBJECT,
        "entry": [{"id": waba_id, "changes": [{"value": v, "field": "messages"} for v in changes]}],
    }


def inbound_value(
    number: SandboxNumber, contacts: list[dict[str, Any]], messages: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "metadata": metadata(number),
        "contacts": contacts,
        "messages": messages,
    }


def statuses_value(number: SandboxNumber, statuses: list[dict[str, Any]]) -> dict[str, Any]:
    return {"messaging_product": "whatsapp", "metadata": metadata(number), "statuses": statuses}


def template_envelope(waba_id: str, at: float, value: dict[str, Any]) -> dict[str, Any]:
    """Section 5: integer ``time``, no metadata, ``object`` last."""
    return {
        "entry": [
            {
                "id": waba_id,
                "time": int(at),
                "changes": [{"value": value, "field": "message_template_status_update"}],
            }
        ],
        "object": OBJECT,
    }


@dataclass
class StatusEvent:
    """One status of one send, turned into a ``statuses[]`` item when it is due."""

    number: SandboxNumber
    wamid: str
    status: str
    recipient_id: str | None
    recipient_user_id: str | None = None
    biz_opaque: str | None = None
    pricing: dict[str, Any] | None = None
    errors: list[dict[str, Any]] | None = None

    def item(self, at: float) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.wamid, "status": self.status, "timestamp": str(int(at))}
        if self.recipient_id is not None:
            out["recipient_id"] = self.recipient_id
        if self.recipient_user_id is not None:
            out["recipient_user_id"] = self.recipient_user_id
        if self.biz_opaque is not None:
            out["biz_opaque_callback_data"] = self.biz_opaque
        if self.pricing is not None:
            out["pricing"] = self.pricing
        if self.errors is not None:
            out["errors"] = self.errors
        return out


@dataclass
class Delivery:
    """One webhook POST (its bytes never change across redeliveries) and what became of it."""

    seq: int
    kind: str  # "messages", "statuses", "template"
    url: str
    raw: bytes
    signature: str
    summary: list[str]  # wamids, "wamid:status", or "template:<id>:<event>"
    first_at: float  # loop time of the first attempt
    duplicate: bool = False
    attempts: list[dict[str, Any]] = field(default_factory=list)
    delivered: bool = False
    gave_up: bool = False
    retries: int = 0
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def public(self, *, with_payload: bool = True) -> dict[str, Any]:
        last = self.attempts[-1] if self.attempts else {}
        out: dict[str, Any] = {
            "seq": self.seq,
            "kind": self.kind,
            "url": self.url,
            "summary": self.summary,
            "duplicate": self.duplicate,
            "delivered": self.delivered,
            "gave_up": self.gave_up,
            "status": last.get("status"),
            "latency_ms": last.get("latency_ms"),
            "attempts": self.attempts,
            "signature": self.signature,
            "body": self.raw.decode(),
        }
        if with_payload:
            out["payload"] = json.loads(self.raw)
        return out


# A job: ("status", StatusEvent) | ("call", producer of (url, kind, obj, summary) posts)
#        | ("retry", Delivery)
Post = tuple[str, str, dict[str, Any], list[str]]
Job = tuple[str, Any]


class Dispatcher:
    def __init__(
        self, config: SandboxConfig, now: Callable[[], float], faults: dict[str, int]
    ) -> None:
        self.config = config
        self.now = now  # the fake clock, for timestamps
        self.faults = faults  # shared with the state; this class takes "duplicate"
        self.session: aiohttp.ClientSession | None = None
        self.records: deque[Delivery] = deque(maxlen=config.record_limit)
        self._heap: list[tuple[float, int, Job]] = []
        self._seq = itertools.count(1)
        self._wake: asyncio.Event | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._sem: asyncio.Semaphore | None = None
        self._task: asyncio.Task[None] | None = None
        # Told of every status as it is posted (the sandbox phone's ticks).
        self.on_status: Callable[[StatusEvent], None] | None = None

    # -- lifetime ------------------------------------------------------------------------------

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.config.webhook_timeout)
        connector = aiohttp.TCPConnector(limit=self.config.webhook_concurrency)
        self.session = aiohttp.ClientSession(timeout=timeout, connector=connector)
        self._wake = asyncio.Event()
        self._sem = asyncio.Semaphore(self.config.webhook_concurrency)
        self._task = asyncio.create_task(self._run(), name="sandbox-webhooks")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._inflight):
            task.cancel()
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
        if self.session is not None:
            await self.session.close()

    def clear(self) -> None:
        """Forget pending jobs and records (``/_fake/reset``)."""
        self._heap.clear()
        self.records.clear()

    # -- scheduling ----------------------------------------------------------------------------

    def schedule(self, delay: float, job: Job) -> None:
        due = asyncio.get_running_loop().time() + delay
        seq = next(self._seq)
        heapq.heappush(self._heap, (due, seq, job))
        if self._wake is not None and self._heap[0][1] == seq:
            self._wake.set()  # the new job is the earliest: the runner must sleep less

    @property
    def pending(self) -> int:
        return len(self._heap)

    async def _run(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            if not self._heap:
                self._wake.clear()
                await self._wake.wait()
                continue
            wait = self._heap[0][0] - loop.time()
            if wait > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
                continue
            now = loop.time()
            due: list[Job] = []
            while self._heap and self._heap[0][0] <= now:
                due.append(heapq.heappop(self._heap)[2])
            try:
                self._dispatch(due, batch=True)
            except Exception:  # a bug here must not stop all later webhooks
                log.exception("sandbox: dispatching webhooks failed")
            await asyncio.sleep(0)

    def _dispatch(self, jobs: list[Job], *, batch: bool) -> list[Delivery]:
        """Turn due jobs into deliveries and start them; returns the new deliveries."""
        started: list[Delivery] = []
        groups: dict[tuple[str, str], list[StatusEvent]] = {}
        for kind, payload in jobs:
            if kind == "status":
                event: StatusEvent = payload
                key = (event.number.webhook_url, event.number.phone_number_id)
                groups.setdefault(key, []).append(event)
                if not batch or len(groups[key]) >= self.config.max_batch:
                    started += self._post_statuses(groups.pop(key))
            elif kind == "call":
                for url, post_kind, obj, summary in payload():
                    started += self.post(url, post_kind, obj, summary)
            elif kind == "retry":
                started.append(self._attempt_later(payload))
        for events in groups.values():
            started += self._post_statuses(events)
        return started

    def _post_statuses(self, events: list[StatusEvent]) -> list[Delivery]:
        at = self.now()
        number = events[0].number
        obj = messages_envelope(
            self.config.waba_id, [statuses_value(number, [e.item(at) for e in events])]
        )
        summary = [f"{e.wamid}:{e.status}" for e in events]
        if self.on_status is not None:
            for event in events:
                self.on_status(event)
        return self.post(number.webhook_url, "statuses", obj, summary)

    # -- delivery --------------------------------------------------------------------------------

    def post(self, url: str, kind: str, obj: dict[str, Any], summary: list[str]) -> list[Delivery]:
        """Start delivering ``obj`` now (twice under the duplicate fault)."""
        raw = encode(obj)
        signature = sign(raw, self.config.app_secret)
        copies = 2 if self._take_fault("duplicate") else 1
        out = []
        for i in range(copies):
            delivery = Delivery(
                seq=next(self._seq),
                kind=kind,
                url=url,
                raw=raw,
                signature=signature,
                summary=summary,
                first_at=asyncio.get_running_loop().time(),
                duplicate=i > 0,
            )
            self.records.append(delivery)
            out.append(self._attempt_later(delivery))
        return out

    def _take_fault(self, name: str) -> bool:
        left = self.faults.get(name, 0)
        if left <= 0:
            return False
        self.faults[name] = left - 1
        return True

    def _attempt_later(self, delivery: Delivery) -> Delivery:
        task = asyncio.create_task(self._attempt(delivery))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        delivery.task = task
        return delivery

    async def wait(self, deliveries: list[Delivery]) -> None:
        """Wait for the current attempt of each delivery (not for later redeliveries)."""
        tasks = [d.task for d in deliveries if d.task is not None and not d.task.done()]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _attempt(self, delivery: Delivery) -> None:
        assert self.session is not None and self._sem is not None
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature-256": delivery.signature,
            "User-Agent": "facebookexternalua",
        }
        status: int | None = None
        error: str | None = None
        async with self._sem:
            started = time.perf_counter()
            try:
                async with self.session.post(delivery.url, data=delivery.raw, headers=headers) as r:
                    await r.read()
                    status = r.status
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            latency = round((time.perf_counter() - started) * 1000, 2)
        attempt: dict[str, Any] = {"status": status, "latency_ms": latency, "at": self.now()}
        if error is not None:
            attempt["error"] = error
        delivery.attempts.append(attempt)
        if status == 200:
            delivery.delivered = True
            return
        delays = self.config.retry_delays or (1.0,)
        delay = delays[min(delivery.retries, len(delays) - 1)]
        elapsed = asyncio.get_running_loop().time() - delivery.first_at
        if elapsed + delay > self.config.retry_horizon:
            delivery.gave_up = True
            log.warning("sandbox: gave up delivering webhook %s to %s", delivery.seq, delivery.url)
            return
        delivery.retries += 1
        self.schedule(delay, ("retry", delivery))

    async def flush(self) -> int:
        """Run every pending job now, in due order, one POST each; wait for all deliveries."""
        await self._drain_inflight()
        jobs = [heapq.heappop(self._heap)[2] for _ in range(len(self._heap))]
        count = 0
        for job in jobs:
            started = self._dispatch([job], batch=False)
            count += len(started)
            await self.wait(started)
        await self._drain_inflight()
        return count

    async def _drain_inflight(self) -> None:
        while self._inflight:
            await asyncio.gather(*list(self._inflight), return_exceptions=True)
