"""The whole contract a channel implements, and the registry that finds channel types.

A channel type is one package ``channels/<type>/`` exposing ``CHANNEL`` (a :class:`Channel`
subclass). It imports only this module and its own package. What it does:

- **parse** a webhook request into typed inbound events (:class:`Message`, :class:`Status`,
  :class:`TemplateUpdate`), refusing a bad one with :class:`WebhookError`; the core then looks
  the contact up (or creates it), drops redeliveries, queues the message for the contact's flow
  and applies statuses — the channel never does;
- **send** one message and say what became of it (:class:`SendResult`);
- **declare** what it can do (:class:`Capabilities`: URN schemes, templates, buttons, lists,
  media, the window rule, its rate limit);
- optionally mount **extra apps** (e.g. a provider's stand-in) and report **health**;
- for a channel with provider templates, **preview** one as the contact sees it
  (:class:`TemplatePreview`), for Studio and the simulator;
- optionally bring **commands** of its own to ``chasqui`` (:class:`Command`, e.g. ``chasqui
  sandbox``) and say why it **cannot be served** so (``serving_problem``).

``bot`` never imports a channel package: it finds a type with :func:`channel_class` and the
installed ones with :func:`channel_types`, and talks to them through this module alone.

Anything it needs kept in Redis (its synced templates, a shared rate bucket) it asks of the
:class:`ChannelHost` it is given; nothing else of ``bot`` is its business. ``docs/channels.md``
walks through writing one.
"""

from __future__ import annotations

import argparse
import importlib
import ipaddress
import pkgutil
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from bot.core.config import ChannelConfig, Config, ConfigError
from bot.core.durations import Duration, parse_duration
from bot.core.errors import ApiError
from bot.core.jsonin import loads
from bot.core.netguard import BlockedAddress, PublicOnlyResolver, check_literal
from bot.core.validation import summary as validation_summary

__all__ = [
    "Attachment",
    "BlockedAddress",
    "Capabilities",
    "Channel",
    "ChannelConfig",
    "ChannelHost",
    "Command",
    "CommandContext",
    "ConfigError",
    "Duration",
    "Inbound",
    "InboundEvent",
    "Location",
    "Message",
    "Mount",
    "PublicOnlyResolver",
    "RateLimit",
    "SendResult",
    "Status",
    "TemplateButton",
    "TemplatePreview",
    "TemplateUpdate",
    "UnknownChannelType",
    "WebhookError",
    "build_channels",
    "channel_class",
    "channel_types",
    "check_literal",
    "is_loopback",
    "loads",
    "parse_duration",
    "read_settings",
    "validate_channels",
    "validation_summary",
]

# {"code": machine-readable, "message": human, ...}: a failed send or a failed status
ErrorInfo = dict[str, Any]


# -------------------------------------------------------------------------- what it can do


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``per_second`` sends, with bursts of ``burst``, shared by every process."""

    per_second: float
    burst: float = 1.0


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a channel type can do; the engine and ``chasqui check`` read it, nothing guesses."""

    schemes: tuple[str, ...]  # URN schemes it reaches (``whatsapp``, ``tel``, ...)
    templates: bool = False  # sends a message's provider template instead of its text
    buttons: int = 0  # quick-reply buttons one message may carry (0: none)
    list_rows: int = 0  # rows of a list of choices (0: no lists)
    media: bool = False  # attachments in and out
    # Seconds after the contact's last inbound message during which free text may be sent
    # (WhatsApp: 24 h; outside it only templates go, and the engine enforces that). None: any time.
    window: int | None = None
    rate: RateLimit | None = None  # None: no limit of ours
    # How long the provider may deliver the same inbound event again: the core drops an
    # external id seen within this many seconds.
    redelivery: int = 86400


# -------------------------------------------------------------------------- inbound events


@dataclass(frozen=True, slots=True)
class Attachment:
    """An inbound media item; its bytes are fetched on demand (``Channel.fetch_media``)."""

    id: str
    mime_type: str | None = None
    sha256: str | None = None
    caption: str | None = None
    filename: str | None = None
    url: str | None = None
    voice: bool = False
    animated: bool = False


@dataclass(frozen=True, slots=True)
class Location:
    latitude: float
    longitude: float
    name: str | None = None
    address: str | None = None
    url: str | None = None


# The events are read, never changed, by the core: ``__slots__`` dataclasses but not ``frozen``,
# since there is one per inbound message and a frozen one costs ~4 us more to build (measured;
# the engine's events chose the same, bot/engine/events.py).
@dataclass(slots=True)
class Message:
    """A contact wrote (or reacted, or sent something we only record)."""

    channel: str  # the configured channel it arrived on (one webhook may carry several)
    urn: str
    external_id: str  # the provider's id: the core's dedup key and the target of statuses
    timestamp: float
    text: str = ""
    kind: str = "text"  # the provider's message type (text, button, image, reaction, ...)
    contact_name: str = ""  # a new contact gets this name
    payload: str | None = None  # a tapped button's or list row's id
    attachment: Attachment | None = None
    location: Location | None = None
    reply_to: str | None = None  # external id of our message it quotes or answers
    reaction: Mapping[str, Any] | None = None
    contacts: Sequence[Mapping[str, Any]] = ()  # shared contact cards
    # False: recorded in the contact's history but no reply for a waiting flow
    is_reply: bool = True


@dataclass(slots=True)
class Status:
    """What became of a message we sent: sent, delivered, read, failed (others kept verbatim)."""

    channel: str
    external_id: str
    status: str
    timestamp: float
    error: ErrorInfo | None = None  # for ``failed``: {"code", "message", ...}


@dataclass(slots=True)
class TemplateUpdate:
    """The provider approved, rejected, paused or disabled one of the channel's templates."""

    channel: str
    name: str
    language: str
    status: str
    reason: str | None = None
    rejection: Mapping[str, Any] | None = None


InboundEvent = Message | Status | TemplateUpdate


@dataclass(slots=True)
class Inbound:
    """A parsed webhook: its events, and what to answer once the core has them."""

    events: list[InboundEvent] = field(default_factory=list)
    reply: web.StreamResponse | None = None  # None: ``200 ok`` (a challenge answers itself)


class WebhookError(ApiError):
    """Refuse a webhook: answered as ``{"error": {"code", "message"}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(status, code, message)


# -------------------------------------------------------------------------- sends out


@dataclass(frozen=True, slots=True)
class SendResult:
    """What became of one send: accepted (with the provider's id) or failed for good."""

    ok: bool
    external_id: str | None = None
    error: ErrorInfo | None = None
    # Not sent yet, but worth another try after this many seconds (throttling, pair rate,
    # a transient provider error). The message stays first in the contact's outbox.
    retry_after: float | None = None


# -------------------------------------------------------------------------- template previews


@dataclass(frozen=True, slots=True)
class TemplateButton:
    """One button of a template as the contact sees it."""

    kind: str  # ``quick_reply`` (answers with its payload), ``url``, ``phone``, or the provider's
    text: str
    payload: str | None = None  # a quick reply's payload, when the send gives one
    target: str | None = None  # a URL button's link (its parameter filled), a phone's number


@dataclass(frozen=True, slots=True)
class TemplatePreview:
    """A template send as the contact sees it: the template's own words, parameters filled in.

    ``known`` False: the channel has no such template (only its name and the send's parameters
    can be shown). ``problem`` (``{"code", "message"}``): why the provider would refuse this send;
    None when it would go."""

    name: str
    language: str
    known: bool = True
    header: str | None = None  # a text header, filled; or a media header's given value
    header_media: str | None = None  # a media header's kind (``image``, ``document``, ...)
    body: str = ""
    footer: str | None = None
    buttons: tuple[TemplateButton, ...] = ()
    problem: ErrorInfo | None = None


# -------------------------------------------------------------------------- the host


class ChannelHost(Protocol):
    """What the core keeps for a channel; implemented in ``bot/work``."""

    async def templates(self, channel: str) -> list[dict[str, Any]]:
        """The channel's synced templates (provider items with ``name``, ``language``)."""
        ...

    async def save_templates(self, channel: str, templates: Sequence[dict[str, Any]]) -> None:
        """Replace the channel's synced templates."""
        ...

    async def throttle(self, bucket: str, rate: RateLimit) -> None:
        """Return when ``bucket`` (e.g. a sender number) may send once more."""
        ...


@dataclass(frozen=True, slots=True)
class Mount:
    """An extra aiohttp app the server mounts under ``prefix`` (e.g. a provider's stand-in)."""

    prefix: str
    app: web.Application


STUDIO_CSRF = web.RequestKey("studio_csrf", str)
STUDIO_CAN_WRITE = web.RequestKey("studio_can_write", bool)


@dataclass(frozen=True, slots=True)
class StudioPage:
    """A page a channel adds to Studio (e.g. the WhatsApp sandbox's phone), listed in Studio's
    menu as ``label`` and mounted at ``/studio/channels/<channel name>/<path>/``.

    Studio's sign-in and CSRF checks run before its handlers (aiohttp runs a parent app's
    middlewares for its sub-apps): a handler finds the signed-in user's CSRF token, to put in
    its forms as the field ``csrf``, in ``request[STUDIO_CSRF]``, and whether the user may
    change things in ``request[STUDIO_CAN_WRITE]``."""

    label: str
    path: str
    app: web.Application


# -------------------------------------------------------------------------- commands


class CommandContext(Protocol):
    """What ``chasqui`` gives a channel's command: the config, read only when asked."""

    def config(self) -> Config:
        """The configuration ``--config`` names (exits 2 when it is unreadable)."""
        ...

    def admin_token(self) -> tuple[str, str]:
        """The server's admin token, and where it is kept (for the operator to read)."""
        ...


@dataclass(frozen=True, slots=True)
class Command:
    """A ``chasqui`` subcommand a channel type brings (the WhatsApp sandbox's ``sandbox``)."""

    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, CommandContext], int]  # the exit code


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a listening address) is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


# -------------------------------------------------------------------------- the channel


class Channel(ABC):
    TYPE: ClassVar[str]
    CAPABILITIES: ClassVar[Capabilities]

    def __init__(self, name: str, config: ChannelConfig, host: ChannelHost) -> None:
        self.name = name
        self.config = config
        self.host = host
        self.base_url = ""  # this server's own URL, set by the runtime before ``start``

    @property
    def capabilities(self) -> Capabilities:
        """This channel's capabilities: the type's, with what its settings change (a rate)."""
        return self.CAPABILITIES

    @classmethod
    def validate(cls, config: ChannelConfig) -> None:
        """Raise ValueError saying what is wrong with this channel's settings."""
        return None

    @classmethod
    def mounts(
        cls, name: str, config: ChannelConfig, base_url: str, admin_token: str
    ) -> list[Mount]:
        """Extra apps this channel asks the server to serve (none unless its settings say).

        ``admin_token`` is the server's: a mounted app with controls of its own (the WhatsApp
        sandbox's ``/_fake``) requires it, as the server's API does."""
        return []

    @classmethod
    def studio_pages(
        cls, name: str, config: ChannelConfig, mounts: Sequence[Mount]
    ) -> list[StudioPage]:
        """Pages this channel adds to Studio (none unless its settings say); ``mounts`` are the
        apps :meth:`mounts` gave, so a page can share their state."""
        return []

    @classmethod
    def serving_problem(cls, config: ChannelConfig, *, host: str, processes: int) -> str | None:
        """Why ``chasqui serve`` must refuse to serve this channel on ``host`` with
        ``processes`` processes (an in-process stand-in on a public address), or None."""
        return None

    @classmethod
    def commands(cls) -> Sequence[Command]:
        """``chasqui`` subcommands this channel type brings (none by default)."""
        return ()

    @classmethod
    def demo_templates(cls) -> list[dict[str, Any]]:
        """Templates a preview may use while none are synced (a stand-in's seed); none here."""
        return []

    def health(self) -> dict[str, Any]:
        """``{"status": "ok"}``, or ``"unhealthy"`` with a reason (shown by /healthz)."""
        return {"status": "ok"}

    def facts(self) -> list[tuple[str, str]]:
        """What an operator should see of this channel at a glance (Studio's home): (English
        label, value) pairs such as its number and whether it runs on a stand-in. Nothing
        secret; Studio shows them to every signed-in user, /healthz never."""
        return []

    async def parse(self, request: web.Request) -> Inbound:
        """Read ``/webhooks/<type>/<name>``: check it is genuine, return its events.

        Raise :class:`WebhookError` to refuse it; never raise on junk from the outside."""
        raise WebhookError(404, "not_found", f"channel {self.name} takes no webhooks")

    async def accepted(self, message: Message) -> None:  # noqa: B027 - optional hook
        """``message`` was queued (first delivery only); e.g. mark it read at the provider."""

    async def templates_changed(self, *, resync: bool) -> None:  # noqa: B027 - optional hook
        """The core applied a template update (``resync``: it named a template we lack)."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Open connections; called once when the server starts."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release what ``start`` opened."""

    async def load_templates(self) -> None:
        """Read the synced templates (``host.templates``) into this process."""
        return None

    def template_problems(self, template: dict[str, Any]) -> str | None:
        """Why this (rendered or not) template block would be refused, or None."""
        return None

    def preview_template(self, template: Mapping[str, Any]) -> TemplatePreview | None:
        """This template send (a send record's ``template``, parameters rendered) as the
        contact would see it, from the loaded templates; None: this channel has no templates
        (its message's ``text`` goes instead)."""
        return None

    @classmethod
    def show_template(cls, item: Mapping[str, Any]) -> TemplatePreview | None:
        """One of this type's synced templates (an item of ``host.templates``) as written, its
        placeholders in place, for a person to read; None: this type has no templates."""
        return None

    # What a media id of this provider looks like; anything else is refused before any request
    # (an id goes into the provider's URL: ``..`` or ``/`` would reach other paths).
    MEDIA_ID: ClassVar[re.Pattern[str]] = re.compile(r"[A-Za-z0-9_-]{1,256}")

    async def fetch_media(self, media_id: str) -> tuple[bytes, str] | None:
        """An inbound attachment's bytes and mime type, fetched on demand; None if unknown.
        Called only with an id that ``MEDIA_ID`` matches whole."""
        return None

    async def sync_templates(self) -> int | None:
        """Read the provider's message templates (``host.save_templates``); None: none here."""
        return None

    async def register_webhook(self, url: str) -> str | None:
        """Tell the provider to post this channel's webhooks to ``url`` (``chasqui channels
        setup``): a line saying what was done, or None when there is nothing to register.
        Raise ValueError saying why the provider refused."""
        return None

    @abstractmethod
    async def send(self, message: dict[str, Any]) -> SendResult:
        """Deliver one message (the record built by the engine) and say what happened."""


# -------------------------------------------------------------------------- the registry


class UnknownChannelType(ValueError):
    pass


def channel_class(type_name: str) -> type[Channel]:
    try:
        module = importlib.import_module(f"channels.{type_name}")
    except ModuleNotFoundError as exc:
        raise UnknownChannelType(f"unknown channel type {type_name!r}") from exc
    cls: type[Channel] = module.CHANNEL
    return cls


def channel_types() -> list[str]:
    """The channel types installed: the packages beside this module."""
    import channels

    return sorted(m.name for m in pkgutil.iter_modules(channels.__path__) if m.ispkg)


Settings = TypeVar("Settings", bound=BaseModel)


def read_settings(model: type[Settings], config: ChannelConfig) -> Settings:
    """A channel's ``[channels.<name>]`` section as its settings model; a ValueError naming
    each bad setting (``build_channels`` and ``validate_channels`` prefix the section)."""
    try:
        return model.model_validate(config.model_dump())
    except ValidationError as exc:
        raise ValueError(
            validation_summary(exc, root="channel", unknown=None, missing=None, plain=True)
        ) from None


def validate_channels(configs: Mapping[str, ChannelConfig]) -> None:
    """Fail early, before anything starts, on an unknown type or bad channel settings."""
    for name, cfg in configs.items():
        try:
            channel_class(cfg.type).validate(cfg)
        except ValueError as exc:
            raise ConfigError(f"channels.{name}: {exc}") from None


def build_channels(configs: Mapping[str, ChannelConfig], host: ChannelHost) -> dict[str, Channel]:
    """The configured channels; a bad section raises ConfigError naming it."""
    channels: dict[str, Channel] = {}
    for name, cfg in configs.items():
        try:
            channels[name] = channel_class(cfg.type)(name, cfg, host)
        except ValueError as exc:  # includes UnknownChannelType and pydantic's errors
            raise ConfigError(f"channels.{name}: {exc}") from None
    return channels
