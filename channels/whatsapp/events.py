"""A parsed WhatsApp message as the channel protocol's typed :class:`Message` (pure)."""

from __future__ import annotations

from channels.protocol import Message
from channels.whatsapp.inbound_records import InboundMessage


def inbound_message(channel: str, m: InboundMessage) -> Message:
    """``m`` for the core: the contact's primary URN, its text, and what it carries."""
    return Message(
        channel=channel,
        urn=m.urn,
        external_id=m.wamid,
        timestamp=float(m.timestamp),
        text=m.text or "",
        kind=m.type,
        contact_name=m.profile_name or "",
        payload=m.payload,
        attachment=m.media,
        location=m.location,
        reply_to=m.context.id if m.context else None,
        reaction={"message_id": m.reaction.message_id, "emoji": m.reaction.emoji}
        if m.reaction
        else None,
        contacts=m.contacts,
        is_reply=m.is_reply,
    )
