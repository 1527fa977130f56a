"""The events the engine consumes, typed, and their one JSON shape in a contact's queue.

A contact's queue in Redis holds JSON objects ``{"type": ..., ...}``: written by the webhook
ingest (``reply``), starts and the API (``start``), the timer script ``fire_timers.lua``
(``timeout``, ``expire``), the status script ``apply_status.lua`` (``fail``) and operators
(``interrupt``); ``webhook`` is made by the worker itself and never queued. :func:`decode` reads
one such object into its class and :meth:`encode` writes it back: the stored shape is the one
those writers have always written, so events queued before an upgrade are applied after it.

Every class is a ``__slots__`` dataclass, read and never changed by the engine. Not ``frozen``:
a frozen dataclass sets each field through ``object.__setattr__``, and decoding a reply (15
fields) then costs ~4.8 µs instead of ~0.7 µs (measured, docs/engine.md). A type this version
does not know decodes to :class:`Unknown`, which the engine applies as a no-op, as it always has.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self


def _opt_str(raw: dict[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"{raw.get('type')} event: {key} must be a string, not {value!r}")


def _at(raw: dict[str, Any]) -> float | None:
    at = raw.get("at")
    return None if at is None else float(at)


@dataclass(slots=True, kw_only=True)
class _Event:
    TYPE: ClassVar[str]
    at: float | None = None  # when it happened (seconds); None: when it is applied

    def encode(self) -> dict[str, Any]:
        """The JSON object stored in the contact's queue; fields left at their default are
        left out, as the writers of each type always did."""
        out: dict[str, Any] = {"type": self.TYPE}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None or value is False or (value == {} and f.name == "params"):
                continue
            out[f.name] = value
        return out


@dataclass(slots=True, kw_only=True)
class Start(_Event):
    """Begin ``flow`` for the contact (a run it waits in is interrupted)."""

    TYPE = "start"
    flow: str
    params: dict[str, Any] = field(default_factory=dict)
    start: str | None = None  # the start record (bot/work/starts.py) that asked for it

    @classmethod
    def decode(cls, raw: dict[str, Any]) -> Start:
        flow = raw["flow"]
        if not isinstance(flow, str):
            raise TypeError(f"start event: flow must be a string, not {flow!r}")
        return cls(
            at=_at(raw), flow=flow, params=raw.get("params") or {}, start=_opt_str(raw, "start")
        )


@dataclass(slots=True, kw_only=True)
class Reply(_Event):
    """An inbound message. ``record_only``: kept in the history, answers no wait (a reaction,
    an unsupported type). The fields after ``record_only`` are what a channel told about it,
    copied onto the message's record as they are."""

    TYPE = "reply"
    text: str = ""
    channel: str | None = None
    urn: str | None = None
    uuid: str | None = None  # the message's uuid, when the channel chose it
    record_only: bool = False
    new_contact: bool = False  # the ingest created the contact for this message: its first ever
    external_id: str | None = None
    msg_type: str | None = None
    payload: Any = None  # a tapped button's payload or a reply id: another reading of the text
    media: Any = None
    location: Any = None
    reply_to: str | None = None
    sent_at: float | None = None
    contacts: Any = None
    reaction: Any = None

    @classmethod
    def decode(cls, raw: dict[str, Any]) -> Reply:
        g = raw.get
        sent_at = g("sent_at")
        return cls(
            at=_at(raw),
            text=str(g("text") or ""),
            channel=g("channel"),
            urn=g("urn"),
            uuid=g("uuid"),
            record_only=bool(g("record_only")),
            new_contact=bool(g("new_contact")),
            external_id=g("external_id"),
            msg_type=g("msg_type"),
            payload=g("payload"),
            media=g("media"),
            location=g("location"),
            reply_to=g("reply_to"),
            sent_at=None if sent_at is None else float(sent_at),
            contacts=g("contacts"),
            reaction=g("reaction"),
        )

    def details(self) -> dict[str, Any]:
        """What the channel told about the message, for its record in the history."""
        return {k: getattr(self, k) for k in INBOUND_DETAILS if getattr(self, k) is not None}


# what a channel may tell about an inbound message, kept on its record in the history
INBOUND_DETAILS = (
    "external_id",
    "msg_type",
    "payload",
    "media",
    "location",
    "reply_to",
    "sent_at",
    "contacts",
    "reaction",
)


@dataclass(slots=True, kw_only=True)
class _TimerFired(_Event):
    token: str | None = None  # the wait it was set for (None: whatever the contact waits in)

    @classmethod
    def decode(cls, raw: dict[str, Any]) -> Self:
        return cls(at=_at(raw), token=_opt_str(raw, "token"))


@dataclass(slots=True, kw_only=True)
class Timeout(_TimerFired):
    """A wait's timeout timer fired."""

    TYPE = "timeout"


@dataclass(slots=True, kw_only=True)
class Expire(_TimerFired):
    """A wait's expiry timer fired: the run ends as expired."""

    TYPE = "expire"


@dataclass(slots=True, kw_only=True)
class Interrupt(_Event):
    """End the contact's runs as interrupted."""

    TYPE = "interrupt"
    reason: str | None = None

    @classmethod
    def decode(cls, raw: dict[str, Any]) -> Interrupt:
        return cls(at=_at(raw), reason=_opt_str(raw, "reason"))


@dataclass(slots=True, kw_only=True)
class WebhookAnswered(_Event):
    """The HTTP call a ``call_webhook`` node asked for answered (``status``, ``json``, ...)."""

    TYPE = "webhook"
    response: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def decode(cls, raw: dict[str, Any]) -> WebhookAnswered:
        return cls(at=_at(raw), response=raw.get("response") or {})


@dataclass(slots=True, kw_only=True)
class SendFailed(_Event):
    """A message sent earlier failed for good (``code``), as the channel reported."""

    TYPE = "fail"
    run: str | None = None
    node: str | None = None
    code: str | None = None
    channel: str | None = None

    @classmethod
    def decode(cls, raw: dict[str, Any]) -> SendFailed:
        g = raw.get
        return cls(at=_at(raw), run=g("run"), node=g("node"), code=g("code"), channel=g("channel"))


@dataclass(slots=True, kw_only=True)
class Unknown(_Event):
    """A type this version does not handle: applied as a no-op (its time still counts)."""

    TYPE = "unknown"
    type: str | None = None

    def encode(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        if self.at is not None:
            out["at"] = self.at
        return out


Event = Start | Reply | Timeout | Expire | Interrupt | WebhookAnswered | SendFailed | Unknown

_DECODERS: dict[str, Callable[[dict[str, Any]], Event]] = {
    cls.TYPE: cls.decode
    for cls in (Start, Reply, Timeout, Expire, Interrupt, WebhookAnswered, SendFailed)
}


def decode(raw: dict[str, Any]) -> Event:
    """The event a queued JSON object stands for; raises (KeyError, TypeError, ValueError) on
    one that cannot be read -- the worker drops such an event and notes it on the run."""
    decoder = _DECODERS.get(raw.get("type"))  # type: ignore[arg-type]
    if decoder is None:
        return Unknown(at=_at(raw), type=_opt_str(raw, "type"))
    return decoder(raw)


__all__ = [
    "INBOUND_DETAILS",
    "Event",
    "Expire",
    "Interrupt",
    "Reply",
    "SendFailed",
    "Start",
    "Timeout",
    "Unknown",
    "WebhookAnswered",
    "decode",
]
