"""Chasqui's message record as one Bot API call (pure): which method, with which body.

The record (built by the engine's ``send_message``) has ``urn`` and some of ``text``,
``quick_replies``, ``attachment``, ``reply_to``. One record makes one call:

- an ``attachment`` goes with ``sendPhoto`` / ``sendVideo`` / ``sendAudio`` / ``sendDocument``
  (chosen like WhatsApp's: a ``<mime or kind>:`` prefix, else the URL's extension; anything not
  a picture, a video or a sound is a document), the ``text`` as its caption;
- otherwise the ``text`` goes with ``sendMessage``;
- ``quick_replies`` become an inline keyboard on that message. Each button's ``callback_data``
  is its title (cut to Telegram's 64 bytes at a character boundary): a tap comes back with the
  title as its payload, as on WhatsApp, and the full title is read from the keyboard;
- ``reply_to`` (our ``<chat id>:<message id>``) quotes that message when it is in the same chat.

There are no templates on Telegram: a record with only a template (the engine sends the text of
one that has text) is refused as ``templates_unsupported``. Anything Telegram would refuse
raises :class:`OutboundError` with a stable code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlparse

TEXT_MAX = 4096
CAPTION_MAX = 1024
CALLBACK_DATA_MAX = 64  # bytes
BUTTONS_MAX = 10  # a flow's quick replies (Telegram takes many more)
ROW_CHARS = 24  # buttons go side by side while their titles add up to this many characters
ROW_BUTTONS = 3

METHODS = {
    "photo": "sendPhoto",
    "video": "sendVideo",
    "audio": "sendAudio",
    "document": "sendDocument",
}
_EXTENSIONS = {
    "jpg": "photo",
    "jpeg": "photo",
    "png": "photo",
    "gif": "document",  # a GIF as a photo loses its animation
    "mp4": "video",
    "mov": "video",
    "mp3": "audio",
    "m4a": "audio",
    "ogg": "audio",
    "opus": "audio",
}
_PREFIX = re.compile(r"^(?P<prefix>[a-z]+(?:/[\w.+-]+)?):(?P<rest>.+)$", re.IGNORECASE)
_KINDS = {"image": "photo", "photo": "photo", "video": "video", "audio": "audio"}


class OutboundError(ValueError):
    """The record cannot become a Telegram message; ``code`` is stable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Call:
    """One Bot API call: ``POST <api>/bot<token>/<method>`` with ``body`` as JSON."""

    method: str
    body: dict[str, Any]
    chat_id: int


def chat_id_of(urn: Any) -> int:
    scheme, _, path = str(urn).partition(":")
    if scheme != "telegram" or not path.isdigit():
        raise OutboundError("invalid_urn", f"{urn!r} is not a telegram:<chat id> URN")
    return int(path)


def build_call(message: Mapping[str, Any]) -> Call:
    chat_id = chat_id_of(message.get("urn"))
    text = str(message.get("text") or "")
    attachment = message.get("attachment")
    body: dict[str, Any] = {"chat_id": chat_id}
    if attachment:
        kind, source = media(str(attachment))
        if len(text) > CAPTION_MAX:
            raise OutboundError(
                "caption_too_long", f"a caption is at most {CAPTION_MAX} characters"
            )
        method = METHODS[kind]
        body[kind] = source
        if text:
            body["caption"] = text
    elif text.strip():
        if len(text) > TEXT_MAX:
            raise OutboundError("text_too_long", f"a message is at most {TEXT_MAX} characters")
        method = "sendMessage"
        body["text"] = text
    elif message.get("template"):
        raise OutboundError(
            "templates_unsupported", "Telegram has no templates: give the message a text"
        )
    else:
        raise OutboundError("empty_message", "a message needs a text or an attachment")
    replies = [str(q) for q in message.get("quick_replies") or []]
    if replies:
        body["reply_markup"] = {"inline_keyboard": keyboard(replies)}
    quoted = _quoted(message.get("reply_to"), chat_id)
    if quoted is not None:
        body["reply_parameters"] = {"message_id": quoted, "allow_sending_without_reply": True}
    return Call(method, body, chat_id)


def callback_data(title: str) -> str:
    """``title`` cut to 64 bytes of UTF-8 without splitting a character."""
    raw = title.encode()
    if len(raw) <= CALLBACK_DATA_MAX:
        return title
    return raw[:CALLBACK_DATA_MAX].decode(errors="ignore")


def keyboard(titles: list[str]) -> list[list[dict[str, str]]]:
    """Short titles side by side (up to 3 a row), a long one on a row of its own."""
    if len(titles) > BUTTONS_MAX:
        raise OutboundError("too_many_buttons", f"at most {BUTTONS_MAX} quick replies")
    rows: list[list[dict[str, str]]] = []
    width = 0
    for title in titles:
        if not title.strip():
            raise OutboundError("empty_button", "a quick reply needs a title")
        button = {"text": title, "callback_data": callback_data(title)}
        if rows and len(rows[-1]) < ROW_BUTTONS and width + len(title) <= ROW_CHARS:
            rows[-1].append(button)
            width += len(title)
        else:
            rows.append([button])
            width = len(title)
    return rows


def media(attachment: str) -> tuple[str, str]:
    """(kind, URL or Telegram file id) of an attachment: ``image/png:https://...``,
    ``document:<file id>``, or a bare URL typed by its extension."""
    value = attachment.strip()
    kind: str | None = None
    match = _PREFIX.match(value)
    if match and not value.startswith(("https://", "http://")):
        prefix, value = match["prefix"].lower(), match["rest"].strip()
        kind = _KINDS.get(prefix.split("/", 1)[0], "document")
        if prefix in ("image/gif", "image/webp"):
            kind = "document"
    if value.startswith(("https://", "http://")):
        if kind is None:
            path = unquote(urlparse(value).path)
            ext = path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
            kind = _EXTENSIONS.get(ext, "document")
        return kind, value
    if kind is None or not re.fullmatch(r"[A-Za-z0-9_-]{10,256}", value):
        raise OutboundError(
            "attachment_invalid", f"attachment {attachment!r} is neither a URL nor a typed file id"
        )
    return kind, value


def _quoted(reply_to: Any, chat_id: int) -> int | None:
    chat, _, message_id = str(reply_to or "").partition(":")
    if chat == str(chat_id) and message_id.isdigit():
        return int(message_id)
    return None
