"""The HTTP channel's JSON, both ways; pure.

In (``POST /webhooks/http/<name>``): ``{"id", "from", "text", "name"?}``; anything else in the
object is ignored (a sender may add fields before we read them). Out (``POST send_url``):
``{"id", "to", "text", "quick_replies"}``. A refused body is a :class:`PayloadError` whose
``code`` names the field at fault (``missing_from``, ``invalid_text``, ...).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from channels.protocol import loads

SCHEME = "ext"
# The ``ext:`` URN rule of bot/core/contacts.py (a test holds the two together): 1 to 128
# characters, no whitespace and no control characters.
EXT_PATH = re.compile(r"[^\s\x00-\x1f\x7f-\x9f\u2028\u2029]{1,128}")
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
ID_MAX, TEXT_MAX, NAME_MAX = 256, 4096, 128


class PayloadError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Incoming:
    """One inbound message, checked."""

    id: str
    sender: str  # the ``from``: the URN's path
    text: str
    name: str = ""

    @property
    def urn(self) -> str:
        return f"{SCHEME}:{self.sender}"


def parse_incoming(raw: bytes) -> Incoming:
    """The message in ``raw``; :class:`PayloadError` naming the field at fault otherwise."""
    try:
        body = loads(raw)
    except (ValueError, RecursionError):  # also bad UTF-8, NaN, nesting too deep
        raise PayloadError("invalid_json", "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise PayloadError(
            "invalid_body", 'the body is a JSON object: {"id", "from", "text", "name"?}'
        )
    message_id = _string(body, "id", ID_MAX)
    if CONTROL.search(message_id):
        raise PayloadError("invalid_id", "id holds no control characters")
    sender = _string(body, "from", 128)
    if not EXT_PATH.fullmatch(sender):
        raise PayloadError(
            "invalid_from",
            "from is 1 to 128 characters without spaces or control characters "
            "(the contact becomes ext:<from>)",
        )
    text = _string(body, "text", TEXT_MAX)
    name = body.get("name")
    if name is None:
        name = ""
    elif not isinstance(name, str) or len(name) > NAME_MAX or CONTROL.search(name):
        raise PayloadError(
            "invalid_name", f"name is a string of at most {NAME_MAX} characters, one line"
        )
    return Incoming(message_id, sender, text, name.strip())


def _string(body: dict[str, Any], field: str, limit: int) -> str:
    if field not in body or body[field] is None:
        raise PayloadError(f"missing_{field}", f"{field} is required")
    value = body[field]
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise PayloadError(
            f"invalid_{field}", f"{field} is a non-empty string of at most {limit} characters"
        )
    return value


class Unsendable(ValueError):
    """The message record holds something this channel does not carry."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def outgoing(message: dict[str, Any]) -> bytes:
    """The JSON body posted to ``send_url`` for one message record of the engine."""
    urn = str(message.get("urn") or "")
    scheme, _, to = urn.partition(":")
    if scheme != SCHEME or not to:
        raise Unsendable("unsupported_urn", f"the http channel reaches ext: contacts, not {urn!r}")
    if message.get("attachment"):
        raise Unsendable(
            "unsupported_attachment",
            "the http channel carries text and quick replies, not attachments",
        )
    text = str(message.get("text") or "")
    if not text:
        what = "a template alone" if message.get("template") else "no text"
        raise Unsendable("empty_message", f"the message has {what}: the http channel sends text")
    body = {
        "id": message["uuid"],
        "to": to,
        "text": text,
        "quick_replies": [str(q) for q in message.get("quick_replies") or []],
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
