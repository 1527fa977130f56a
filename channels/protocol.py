"""The one small interface every channel implements, and the registry that finds them.

A channel type is one module in ``channels/`` exposing ``CHANNEL`` (its class). Nothing in
``bot/`` names a channel type: the runtime asks a channel which URN schemes it reaches and hands it
messages to send; webhook routes come from the channel itself.
"""

from __future__ import annotations

import importlib
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from aiohttp import web

from bot.core.config import ChannelConfig, ConfigError
from bot.engine.sprint import Route
from bot.store import Store


@dataclass(frozen=True)
class SendResult:
    """What became of one send: accepted (with the provider's id) or failed for good."""

    ok: bool
    external_id: str | None = None
    error: dict[str, Any] | None = None  # {"code": machine-readable, "message": human, ...}
    # Not sent yet, but worth another try after this many seconds (throttling, pair rate,
    # a transient provider error). The message stays first in the contact's outbox.
    retry_after: float | None = None


class Channel(ABC):
    TYPE: ClassVar[str]
    SCHEMES: ClassVar[tuple[str, ...]]
    # Seconds after the contact's last message during which free text may be sent; None: any
    # time. WhatsApp: 24 h; outside it only templates go, and the engine enforces that.
    WINDOW: ClassVar[int | None] = None

    def __init__(self, name: str, config: ChannelConfig, store: Store) -> None:
        self.name = name
        self.config = config
        self.store = store
        self.base_url = ""  # this server's own URL, set by the runtime before ``start``

    @classmethod
    def validate(cls, config: ChannelConfig) -> None:
        """Raise ValueError saying what is wrong with this channel's settings."""
        return None

    @classmethod
    def sub_apps(
        cls, name: str, config: ChannelConfig, base_url: str
    ) -> list[tuple[str, web.Application]]:
        """Extra aiohttp apps to serve under a prefix (e.g. a provider's stand-in)."""
        return []

    # Sends a message's WhatsApp-style template instead of its text when it has one.
    TEMPLATES: ClassVar[bool] = False

    @classmethod
    def route_of(cls, name: str) -> Route:
        """What the engine must know of a channel of this type called ``name``."""
        return Route(name, cls.SCHEMES, cls.WINDOW, cls.TEMPLATES)

    @property
    def route(self) -> Route:
        return self.route_of(self.name)

    def health(self) -> dict[str, Any]:
        """``{"status": "ok"}``, or ``"unhealthy"`` with a reason (shown by /healthz)."""
        return {"status": "ok"}

    async def handle_webhook(self, request: web.Request) -> web.StreamResponse:
        """Answer ``/webhooks/<type>/<name>``; channels without inbound webhooks have none."""
        return web.json_response(
            {"error": {"code": "not_found", "message": f"channel {self.name} takes no webhooks"}},
            status=404,
        )

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Open connections; called once when the server starts."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release what ``start`` opened."""

    async def load_templates(self) -> None:
        """Read the synced templates from Redis into this process."""
        return None

    def template_problems(self, template: dict[str, Any]) -> str | None:
        """Why this (rendered or not) template block would be refused, or None."""
        return None

    # What a media id of this provider looks like; anything else is refused before any request
    # (an id goes into the provider's URL: ``..`` or ``/`` would reach other paths).
    MEDIA_ID: ClassVar[re.Pattern[str]] = re.compile(r"[A-Za-z0-9_-]{1,256}")

    async def fetch_media(self, media_id: str) -> tuple[bytes, str] | None:
        """An inbound attachment's bytes and mime type, fetched on demand; None if unknown.
        Called only with an id that ``MEDIA_ID`` matches whole."""
        return None

    async def sync_templates(self) -> int | None:
        """Read the provider's message templates into Redis; None: this channel has none."""
        return None

    @abstractmethod
    async def send(self, message: dict[str, Any]) -> SendResult:
        """Deliver one message (the record built by the engine) and say what happened."""


class UnknownChannelType(ValueError):
    pass


def channel_class(type_name: str) -> type[Channel]:
    try:
        module = importlib.import_module(f"channels.{type_name}")
    except ModuleNotFoundError as exc:
        raise UnknownChannelType(f"unknown channel type {type_name!r}") from exc
    cls: type[Channel] = module.CHANNEL
    return cls


def validate_channels(configs: dict[str, ChannelConfig]) -> None:
    """Fail early, before anything starts, on an unknown type or bad channel settings."""
    for name, cfg in configs.items():
        try:
            channel_class(cfg.type).validate(cfg)
        except ValueError as exc:
            raise ConfigError(f"channels.{name}: {exc}") from None


def build_channels(configs: dict[str, ChannelConfig], store: Store) -> dict[str, Channel]:
    """The configured channels; a bad section raises ConfigError naming it."""
    channels: dict[str, Channel] = {}
    for name, cfg in configs.items():
        try:
            channels[name] = channel_class(cfg.type)(name, cfg, store)
        except ValueError as exc:  # includes UnknownChannelType and pydantic's errors
            raise ConfigError(f"channels.{name}: {exc}") from None
    return channels
