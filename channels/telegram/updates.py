"""Telegram updates as the channel protocol's typed :class:`Message` (pure).

One webhook is one update: ``update_id`` plus exactly one payload. We ask Telegram for two kinds
(``allowed_updates``, see :data:`ALLOWED_UPDATES`):

- ``message`` from a private chat: text, a photo (its largest size), a document, a video, an
  audio, a voice note, a sticker, a location or venue, a shared contact. ``chat.id`` is the
  contact's address (``telegram:<chat id>``); ``reply_to_message`` names ours as
  ``<chat id>:<message id>``, the id a send returns.
- ``callback_query``: a tap on an inline button of ours. Its ``data`` is the button's
  ``callback_data``; the button's title is read back from the keyboard of the message it was on
  (Telegram sends that message with the tap), so the flow sees the same reply whether the
  contact tapped or typed the title.

The external id (the core's dedup key) is the ``update_id``: Telegram redelivers an update with
the same id until we answer 2xx, and keeps it at most 24 hours. Anything else (group chats,
edits, polls) is skipped with a note: answered 200, so Telegram does not send it again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from channels.protocol import Attachment, Location, Message

ALLOWED_UPDATES = ("message", "callback_query")
MEDIA_KINDS = ("document", "video", "audio", "voice", "sticker", "animation", "video_note")


@dataclass(slots=True)
class ButtonTap(Message):
    """A tapped inline button: a :class:`Message` that also carries the query to answer."""

    callback_id: str = ""


@dataclass(frozen=True, slots=True)
class Parsed:
    """One update: the message for the core, or why it was skipped."""

    update_id: int
    message: Message | None = None
    skipped: str | None = None


class BadUpdate(ValueError):
    """Not a Telegram update at all (answered 400)."""


def parse_update(payload: Any, channel: str, now: float) -> Parsed:
    """Read one update; ``now`` stamps a tap (a callback query carries no time of its own), or
    a message without its ``date``."""
    if not isinstance(payload, dict) or not _is_int(payload.get("update_id")):
        raise BadUpdate("an update is a JSON object with an integer update_id")
    update_id = int(payload["update_id"])
    message = payload.get("message")
    if isinstance(message, dict):
        return _message(update_id, message, channel, now)
    query = payload.get("callback_query")
    if isinstance(query, dict):
        return _callback(update_id, query, channel, now)
    kinds = sorted(k for k in payload if k != "update_id")
    return Parsed(update_id, skipped=f"update {update_id}: {', '.join(kinds) or 'empty'}")


def _message(update_id: int, m: dict[str, Any], channel: str, now: float) -> Parsed:
    chat = m.get("chat")
    if not isinstance(chat, dict) or not _is_int(chat.get("id")):
        raise BadUpdate(f"update {update_id}: message.chat.id is missing")
    if chat.get("type", "private") != "private" or int(chat["id"]) <= 0:
        return Parsed(update_id, skipped=f"update {update_id}: a {chat.get('type')} chat")
    sender = _obj(m.get("from")) or chat
    content = _content(m)
    if content is None:
        kinds = sorted(k for k in m if k not in _ENVELOPE)
        return Parsed(update_id, skipped=f"update {update_id}: message of {', '.join(kinds)}")
    chat_id = int(chat["id"])
    reply = m.get("reply_to_message")
    reply_to = (
        f"{chat_id}:{reply['message_id']}"
        if isinstance(reply, dict) and _is_int(reply.get("message_id"))
        else None
    )
    return Parsed(
        update_id,
        Message(
            channel=channel,
            urn=f"telegram:{chat_id}",
            external_id=str(update_id),
            timestamp=float(m["date"]) if _is_int(m.get("date")) else now,
            contact_name=_name(sender),
            reply_to=reply_to,
            **content,
        ),
    )


_ENVELOPE = frozenset(
    {"message_id", "from", "chat", "date", "reply_to_message", "entities", "sender_chat"}
)


def _content(m: dict[str, Any]) -> dict[str, Any] | None:
    """The Message fields of one message's payload; None for a kind we do not take."""
    caption = _str(m.get("caption"))
    if isinstance(m.get("text"), str):
        return {"text": m["text"], "kind": "text"}
    photos = m.get("photo")
    if isinstance(photos, list) and photos:
        sizes = [p for p in photos if isinstance(p, dict) and isinstance(p.get("file_id"), str)]
        if sizes:
            largest = max(sizes, key=lambda p: int(p.get("width") or 0) * int(p.get("height") or 0))
            attachment = Attachment(id=largest["file_id"], mime_type="image/jpeg", caption=caption)
            return {"text": caption or "", "kind": "image", "attachment": attachment}
    for kind in MEDIA_KINDS:
        media = m.get(kind)
        if isinstance(media, dict) and isinstance(media.get("file_id"), str):
            attachment = Attachment(
                id=media["file_id"],
                mime_type=_str(media.get("mime_type")) or _DEFAULT_MIME.get(kind),
                caption=caption,
                filename=_str(media.get("file_name")),
                voice=kind in ("voice", "video_note"),
                animated=kind == "animation" or media.get("is_animated") is True,
            )
            return {"text": caption or "", "kind": kind, "attachment": attachment}
    venue = m.get("venue") if isinstance(m.get("venue"), dict) else None
    where = (venue or {}).get("location", m.get("location"))
    if isinstance(where, dict) and _is_number(where.get("latitude")):
        location = Location(
            latitude=float(where["latitude"]),
            longitude=float(where.get("longitude") or 0.0),
            name=_str((venue or {}).get("title")),
            address=_str((venue or {}).get("address")),
        )
        label = ", ".join(p for p in (location.name, location.address) if p)
        return {"text": label, "kind": "location", "location": location}
    card = m.get("contact")
    if isinstance(card, dict) and isinstance(card.get("phone_number"), str):
        return {"text": _name(card), "kind": "contacts", "contacts": [_card(card)]}
    return None


_DEFAULT_MIME = {
    "voice": "audio/ogg",
    "video_note": "video/mp4",
    "sticker": "image/webp",
    "animation": "video/mp4",
}


def _card(c: dict[str, Any]) -> dict[str, Any]:
    """A shared contact in the shape WhatsApp uses (name, phones), whatever the channel."""
    first, last = _str(c.get("first_name")) or "", _str(c.get("last_name")) or ""
    phone = str(c["phone_number"])
    out: dict[str, Any] = {
        "name": {"formatted_name": _name(c), "first_name": first, "last_name": last},
        "phones": [{"phone": phone if phone.startswith("+") else f"+{phone}", "type": "CELL"}],
    }
    if _is_int(c.get("user_id")):
        out["telegram_user_id"] = int(c["user_id"])
    return out


def _callback(update_id: int, q: dict[str, Any], channel: str, now: float) -> Parsed:
    query_id, sender = q.get("id"), q.get("from")
    if not isinstance(query_id, str) or not isinstance(sender, dict):
        raise BadUpdate(f"update {update_id}: callback_query needs an id and a sender")
    message = _obj(q.get("message"))
    chat = _obj(message.get("chat")) or sender
    if not _is_int(chat.get("id")) or int(chat["id"]) <= 0:
        return Parsed(update_id, skipped=f"update {update_id}: a tap outside a private chat")
    chat_id, data = int(chat["id"]), _str(q.get("data"))
    if data is None:  # a game button: nothing a flow could read
        return Parsed(update_id, skipped=f"update {update_id}: a tap without data")
    reply_to = f"{chat_id}:{message['message_id']}" if _is_int(message.get("message_id")) else None
    return Parsed(
        update_id,
        ButtonTap(
            channel=channel,
            urn=f"telegram:{chat_id}",
            external_id=str(update_id),
            timestamp=now,
            text=button_title(message, data) or data,
            kind="button",
            contact_name=_name(sender),
            payload=data,
            reply_to=reply_to,
            callback_id=query_id,
        ),
    )


def button_title(message: Mapping[str, Any], data: str) -> str | None:
    """The title of the button whose ``callback_data`` is ``data`` on ``message``'s keyboard."""
    markup = message.get("reply_markup")
    rows = markup.get("inline_keyboard") if isinstance(markup, dict) else None
    for row in rows if isinstance(rows, list) else []:
        for button in row if isinstance(row, list) else []:
            if isinstance(button, dict) and button.get("callback_data") == data:
                return _str(button.get("text"))
    return None


def _name(who: Mapping[str, Any]) -> str:
    parts = (_str(who.get("first_name")), _str(who.get("last_name")))
    return " ".join(p for p in parts if p) or _str(who.get("title")) or ""


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
