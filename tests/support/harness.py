"""Drive the real runtime (store, registry, worker, Valkey) deterministically from a test.

A :class:`Bot` owns a flows folder the test writes YAML into, a :class:`Store` on the test's
Redis, a :class:`FlowRegistry`, a ``ManualClock`` and one or more :class:`Worker` s whose
channels are :class:`CapturingChannel` s. ``drain`` reads the ready and send streams and
processes them until both are empty: no sleeps, no background loops.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from bot.core.clock import ManualClock
from bot.core.config import ChannelConfig
from bot.engine.flows import FlowRegistry, ReloadReport
from bot.engine.sprint import Limits
from bot.store import Store
from bot.store.keys import TIMERS, contact_key
from bot.work.host import StoreHost, route_of
from bot.work.webhook_calls import WebhookCaller
from bot.work.worker import Worker, WorkerSettings
from channels.protocol import Capabilities, Channel, SendResult


class CapturingChannel(Channel):
    """Records every message handed to it; fails those whose text is in ``fail``."""

    TYPE = "capture"
    CAPABILITIES = Capabilities(schemes=("tel",), buttons=3, list_rows=10)

    def __init__(self, name: str, store: Store) -> None:
        super().__init__(name, ChannelConfig(type="capture"), StoreHost(store))
        self.sent: list[dict[str, Any]] = []
        self.fail: dict[str, str] = {}  # message text -> error code

    async def send(self, message: dict[str, Any]) -> SendResult:
        self.sent.append(message)
        code = self.fail.get(str(message.get("text")))
        if code is not None:
            return SendResult(ok=False, error={"code": code})
        return SendResult(ok=True, external_id=f"ext-{message['uuid']}")

    @property
    def texts(self) -> list[str | None]:
        return [m.get("text") for m in self.sent]


class Bot:
    """One simulated ``chasqui serve`` process (or several, see :meth:`new_worker`)."""

    def __init__(
        self,
        redis: Redis,
        folder: Path,
        *,
        clock: ManualClock | None = None,
        limits: Limits | None = None,
        settings: WorkerSettings | None = None,
        webhooks: WebhookCaller | None = None,
        channel_names: tuple[str, ...] = ("cap",),
    ) -> None:
        self.redis = redis
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.clock = clock or ManualClock()
        self.limits = limits or Limits()
        self.settings = settings
        self.store = Store(redis)
        self.channels: dict[str, CapturingChannel] = {
            name: CapturingChannel(name, self.store) for name in channel_names
        }
        routes = [route_of(c.name, c.CAPABILITIES) for c in self.channels.values()]
        self.registry = FlowRegistry(folder, routes, self.limits)
        self.webhooks = webhooks or WebhookCaller(allow_private=True)
        self.worker = self.new_worker(self.webhooks)

    @property
    def channel(self) -> CapturingChannel:
        return next(iter(self.channels.values()))

    def new_worker(
        self,
        webhooks: WebhookCaller | None = None,
        settings: WorkerSettings | None = None,
        cls: type[Worker] = Worker,
    ) -> Worker:
        """Another worker on the same store, flows and channels (another consumer)."""
        return cls(
            self.store,
            lambda: self.registry.engine,
            dict[str, Channel](self.channels),
            self.clock,
            settings or self.settings,
            webhooks or self.webhooks,
        )

    async def setup(self) -> Bot:
        await self.store.setup()
        return self

    async def close(self) -> None:
        await self.webhooks.close()

    # -- flows -------------------------------------------------------------------------------
    def write(self, flow_id: str, yaml: str, reload: bool = True) -> ReloadReport | None:
        (self.folder / f"{flow_id}.yaml").write_text(textwrap.dedent(yaml), encoding="utf-8")
        if not reload:
            return None
        report = self.registry.reload()
        assert not report.problems, [str(p) for p in report.problems]
        return report

    # -- contacts and events -----------------------------------------------------------------
    async def contact(
        self, urn: str = "tel:+15550001", name: str = "Ana Souza", **extra: Any
    ) -> str:
        record, created = await self.store.contact_for_urn(urn, name, self.clock.now(), **extra)
        assert created
        return str(record["uuid"])

    async def start(self, cid: str, flow: str, params: dict[str, Any] | None = None) -> None:
        event: dict[str, Any] = {"type": "start", "flow": flow, "at": self.clock.now()}
        if params:
            event["params"] = params
        await self.store.enqueue(cid, event)

    async def reply(self, cid: str, text: str, channel: str | None = None) -> None:
        event: dict[str, Any] = {"type": "reply", "text": text, "at": self.clock.now()}
        if channel:
            event["channel"] = channel
        await self.store.enqueue(cid, event)

    async def fire(self, seconds: float) -> int:
        """Move the clock forward and turn due timers into events."""
        self.clock.advance(seconds)
        return await self.store.fire_timers(self.clock.now())

    async def drain(
        self, worker: Worker | None = None, consumer: str = "t", batch: int = 100
    ) -> None:
        """Process ready and send signals until both streams are empty and no send is in hand."""
        worker = worker or self.worker
        while True:
            entries = await self.store.read_ready(consumer, batch, None)
            sends = await self.store.read_sendq(consumer, batch, None)
            if not entries and not sends:
                if await worker.sender.settle():  # inline sends may have signalled more
                    continue
                return
            if entries:
                await worker.process(entries)
            if sends:
                await worker.send(sends)

    # -- reading state -----------------------------------------------------------------------
    async def messages(self, cid: str, direction: str | None = "out") -> list[dict[str, Any]]:
        msgs = await self.store.messages(cid, limit=10_000)
        return [m for m in msgs if direction is None or m["direction"] == direction]

    async def texts(self, cid: str) -> list[str | None]:
        return [m.get("text") for m in await self.messages(cid)]

    async def session(self, cid: str) -> dict[str, Any]:
        raw = await self.store.session_raw(cid)
        data: dict[str, Any] = json.loads(raw) if raw else {}
        return data

    async def runs(self, cid: str) -> list[dict[str, Any]]:
        """Ended runs, in the order they were created."""
        return list(reversed(await self.store.ended_runs(cid)))

    async def get_contact(self, cid: str) -> dict[str, Any]:
        contact = await self.store.get_contact(cid)
        assert contact is not None
        return contact

    async def timers(self) -> list[str]:
        members: list[Any] = await self.redis.zrange(TIMERS, 0, -1)
        return [bytes(m).decode() for m in members]

    async def queue_len(self, cid: str) -> int:
        return int(await self.redis.llen(contact_key(cid, "q")))


MakeBot = Callable[..., Awaitable[Bot]]
"""The ``make_bot`` fixture (tests/conftest.py)."""
