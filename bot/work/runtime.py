"""Everything one process needs, built from the config: Redis, store, flows, channels, workers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets

from redis.asyncio import Redis

from bot.core.clock import Clock
from bot.core.config import Config
from bot.core.durations import parse_duration
from bot.engine.apply import Engine
from bot.engine.flows import FlowRegistry, ReloadReport
from bot.engine.optout import START_CONFIRMATION, START_WORDS, STOP_CONFIRMATION, STOP_WORDS, OptOut
from bot.engine.sprint import Limits
from bot.store import Store
from bot.store.redisconn import Connector
from bot.work.host import StoreHost, routes_of
from bot.work.ingest import Ingest
from bot.work.webhook_calls import WebhookCaller
from bot.work.worker import Worker, WorkerSettings
from channels.protocol import Channel, build_channels

log = logging.getLogger("chasqui")


def limits_of(config: Config) -> Limits:
    e = config.engine
    return Limits(
        max_steps=e.max_steps_per_event,
        loop_repeats=e.loop_repeats,
        loop_window=parse_duration(e.loop_window),
        default_expire=parse_duration(e.default_expire_after),
        max_reply_age=parse_duration(e.max_reply_age),
        opt_out=opt_out_of(config),
    )


def opt_out_of(config: Config) -> OptOut:
    """The stop/start words and confirmations: the defaults, per language overridden."""
    c = config.contacts
    return OptOut(
        stop_words={**STOP_WORDS, **{k: tuple(v) for k, v in c.stop_words.items()}},
        start_words={**START_WORDS, **{k: tuple(v) for k, v in c.start_words.items()}},
        stop_confirmation={**STOP_CONFIRMATION, **c.stop_confirmation},
        start_confirmation={**START_CONFIRMATION, **c.start_confirmation},
    )


def admin_token(config: Config) -> str:
    """The configured token, else one generated once and kept (0600) beside the data."""
    token = config.server.admin_token.get_secret_value()
    if token:
        return token
    path = config.resolve(config.redis.data_dir) / "admin-token"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = secrets.token_urlsafe(32)
    path.touch(mode=0o600)
    path.write_text(token + "\n")
    log.info("generated an admin token; it is in %s", path)
    return token


class Runtime:
    def __init__(self, config: Config, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or Clock()
        self._keeper: asyncio.Task[None] | None = None
        self.connector: Connector | None = None
        self.redis: Redis | None = None
        self._store: Store | None = None
        self.channels: dict[str, Channel] = {}
        self._ingest: Ingest | None = None
        self.worker: Worker | None = None
        self.registry = FlowRegistry(
            config.resolve(config.flows.path), [], limits_of(config), set(config.channels)
        )

    @property
    def store(self) -> Store:
        assert self._store is not None, "runtime not started"
        return self._store

    @property
    def ingest(self) -> Ingest:
        """Where the webhook routes hand the channels' inbound events."""
        assert self._ingest is not None, "runtime not started"
        return self._ingest

    @property
    def engine(self) -> Engine:
        return self.registry.engine

    def load_flows(self) -> ReloadReport:
        return self.registry.reload()

    async def connect(self) -> Store:
        self.connector = Connector(
            self.config.redis.url.get_secret_value(),
            self.config.resolve(self.config.redis.data_dir),
            health_check_interval=10,
        )
        self.redis = await self.connector.open()
        if self.connector.embedded is not None:
            log.info("embedded Valkey ready")
        self._store = Store(self.redis)
        await self._store.ping()
        await self._store.setup()
        indexed = await self._store.ensure_search_index()
        if indexed:
            log.info("contact search index built: %d contacts", indexed)
        return self._store

    async def start(self, *, work: bool = True) -> None:
        """Connect, build channels and routes; with ``work``, run the event/send/timer loops."""
        store = await self.connect()
        self.channels = build_channels(self.config.channels, StoreHost(store))
        for channel in self.channels.values():
            channel.base_url = self.config.server.url
            await channel.start()
        self.registry.routes = routes_of(self.channels)
        self.registry.engine = Engine(
            self.registry.flows, self.registry.routes, self.registry.limits
        )
        e = self.config.engine
        self.worker = Worker(
            store,
            lambda: self.registry.engine,
            self.channels,
            self.clock,
            WorkerSettings(
                lock_ttl_ms=parse_duration(e.lock_ttl) * 1000,
                reclaim_idle_ms=parse_duration(e.lock_ttl) * 1000 + 5000,
            ),
            WebhookCaller(allow_private=e.webhook_allow_private),
        )
        # the webhooks hand the contacts they claim to this worker (when it runs)
        s = self.worker.settings
        self._ingest = Ingest(
            store, self.channels, self.clock.now, self.worker.lane, s.lock_ttl_ms, s.max_events
        )
        if work:
            await self.worker.start()
        if self.connector is not None and self.connector.embedded is not None:
            # a killed embedded Valkey is started again; the server heals without a restart
            self._keeper = asyncio.create_task(self.connector.embedded.keep_running())

    async def stop(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
            self._keeper = None
        if self.worker is not None:
            await self.worker.stop()
        for channel in self.channels.values():
            await channel.close()
        if self.connector is not None:
            await self.connector.close()
