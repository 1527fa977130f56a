"""What a WhatsApp webhook holds once parsed: messages, statuses, template updates, errors.

Plain records (frozen, slotted dataclasses) with the message types that decide what a message
does (answer a flow, open the 24-hour window). Built by :mod:`channels.whatsapp.inbound`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from channels.protocol import Attachment, Location
from channels.whatsapp.urns import bsuid_urn, phone_urn, urn_for

OBJECT = "whatsapp_business_account"
MEDIA_TYPES = frozenset({"image", "audio", "video", "document", "sticker"})
# types that become a ``reply`` event for the flow (the user answered something)
REPLY_TYPES = frozenset({"text", "button", "interactive", "location", "contacts", *MEDIA_TYPES})
# types parsed on purpose; anything else is kept (for dedup) with ``supported=False``
KNOWN_TYPES = REPLY_TYPES | {
    "reaction",
    "unsupported",
    "request_welcome",
    "system",
    "order",
    "edit",
    "revoke",
}
# inbound types that do NOT open/extend the 24-hour window: reactions are unconfirmed, system
# notices are not the user writing
NO_WINDOW_TYPES = frozenset({"reaction", "system"})


@dataclass(frozen=True, slots=True)
class ErrorDetail:
    """One Graph error as found in webhooks (``errors[]``) or in an error response."""

    code: int | None
    title: str | None = None
    message: str | None = None
    details: str | None = None
    href: str | None = None


# The channel protocol's records, as this parser fills them (``Media``: Meta's name for it).
Media = Attachment


@dataclass(frozen=True, slots=True)
class Reaction:
    message_id: str
    emoji: str | None  # None: the reaction was removed ("" or no ``emoji`` key)


@dataclass(frozen=True, slots=True)
class MessageContext:
    id: str | None = None  # wamid of our message being quoted / tapped
    from_: str | None = None  # our display number
    forwarded: bool = False  # forwarded at all (``forwarded`` or ``frequently_forwarded``)
    frequently_forwarded: bool = False
    referred_product: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class InboundMessage:
    phone_number_id: str
    wamid: str
    timestamp: int
    type: str
    wa_id: str | None = None
    user_id: str | None = None
    parent_user_id: str | None = None
    profile_name: str | None = None
    username: str | None = None
    text: str | None = None
    payload: str | None = None
    media: Media | None = None
    location: Location | None = None
    contacts: list[dict[str, Any]] = field(default_factory=list)
    reaction: Reaction | None = None
    context: MessageContext | None = None
    referral: dict[str, Any] | None = None
    errors: list[ErrorDetail] = field(default_factory=list)
    supported: bool = True
    data: dict[str, Any] | None = None  # the type-named object, verbatim (order, system, ...)

    @property
    def urn(self) -> str:
        return urn_for(self.wa_id, self.user_id)

    @property
    def urns(self) -> list[str]:
        """Every URN this sender is known by: phone first, then BSUID."""
        out = []
        if self.wa_id:
            out.append(phone_urn(self.wa_id))
        if self.user_id:
            out.append(bsuid_urn(self.user_id))
        return out

    @property
    def is_reply(self) -> bool:
        """The user answered something a flow can match (text, tap, media, location, cards)."""
        return self.supported and self.type in REPLY_TYPES

    @property
    def opens_window(self) -> bool:
        """Whether this message opens/extends the 24-hour customer service window."""
        return self.type not in NO_WINDOW_TYPES


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    phone_number_id: str
    wamid: str
    status: str  # sent, delivered, read, failed, played (others kept verbatim)
    timestamp: int
    recipient_id: str | None = None
    recipient_user_id: str | None = None
    errors: list[ErrorDetail] = field(default_factory=list)
    pricing: dict[str, Any] | None = None
    biz_opaque_callback_data: str | None = None


@dataclass(frozen=True, slots=True)
class TemplateStatusUpdate:
    waba_id: str | None
    event: str
    template_id: str  # the webhook sends an integer; kept as a string like the list API
    name: str | None
    language: str | None  # ``-`` normalised to ``_``
    reason: str | None
    category: str | None = None
    rejection_info: dict[str, Any] | None = None
    other_info: dict[str, Any] | None = None
    disable_info: dict[str, Any] | None = None
    time: int | None = None


@dataclass(slots=True)
class WebhookBatch:
    messages: list[InboundMessage] = field(default_factory=list)
    statuses: list[StatusUpdate] = field(default_factory=list)
    template_updates: list[TemplateStatusUpdate] = field(default_factory=list)
    errors: list[ErrorDetail] = field(default_factory=list)  # value-level errors[]
    skipped: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- parsing helpers
