"""Outbound side: turn Chasqui's message record into a Graph ``/messages`` body.

The record (built by the engine's ``send_message`` node) has ``urn`` and some of ``text``,
``quick_replies``, ``attachment``, ``template``, ``reply_to``, ``preview_url``. One record makes
one request body:

- a ``template`` goes as ``type: template`` (``text``/``quick_replies``/``attachment`` are not
  sent with it: a template is what may go outside the 24-hour window);
- ``quick_replies`` become reply buttons when there are at most 3, every title has at most 20
  characters and the text at most 1024; otherwise a list (at most 10 rows). Each button/row id
  is the quick reply's full title, so the tap comes back with ``payload`` equal to the title the
  flow wrote. A row title longer than 24 characters is cut to 23 plus ``…``, and the full title
  (up to 72 characters) goes in the row's description;
- an ``attachment`` alone (with ``text`` as the caption) is a media message; with buttons it is
  the media header of the interactive message;
- plain ``text`` is a text message.

Anything WhatsApp would refuse raises ``OutboundError`` with a stable ``code``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlparse

from channels.whatsapp.templates import MEDIA_HEADERS, TemplateInfo, button_index
from channels.whatsapp.urns import send_target

WINDOW = 24 * 3600
TEXT_MAX = 4096
CAPTION_MAX = 1024
BUTTONS_MAX, BUTTON_TITLE_MAX, BUTTON_BODY_MAX, BUTTON_ID_MAX = 3, 20, 1024, 256
ROWS_MAX, ROW_TITLE_MAX, ROW_DESCRIPTION_MAX, ROW_ID_MAX = 10, 24, 72, 200
LIST_BUTTON_MAX = 20
ELLIPSIS = "…"

EXTENSIONS = {
    "jpg": "image",
    "jpeg": "image",
    "png": "image",
    "webp": "sticker",
    "mp4": "video",
    "3gp": "video",
    "aac": "audio",
    "amr": "audio",
    "mp3": "audio",
    "m4a": "audio",
    "ogg": "audio",
    "opus": "audio",
}
DOC_EXTENSIONS = frozenset({"pdf", "doc", "docx", "xls", "xlsx", "ppt", "pptx", "txt", "csv"})
# template header format → parameter type (a GIF header is an MP4 video on WhatsApp)
HEADER_KINDS = {"IMAGE": "image", "VIDEO": "video", "GIF": "video", "DOCUMENT": "document"}
MEDIA_KINDS = ("image", "video", "audio", "document", "sticker")
CAPTIONED = frozenset({"image", "video", "document"})
# "image/jpeg:https://..." (a MIME type) or "image:https://..." (a WhatsApp media type)
_PREFIX = re.compile(r"^(?P<prefix>[a-z]+(?:/[\w.+-]+)?):(?P<rest>.+)$", re.IGNORECASE)
_GEO = re.compile(
    r"^geo:(?P<lat>-?\d+(?:\.\d+)?),(?P<lon>-?\d+(?:\.\d+)?)(?:;name=(?P<name>[^;]*))?"
    r"(?:;address=(?P<address>.*))?$"
)


class OutboundError(ValueError):
    """The record cannot become a WhatsApp message; ``code`` is stable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def as_error(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True, slots=True)
class MediaRef:
    kind: str  # image, video, audio, document, sticker
    link: str | None = None
    id: str | None = None
    filename: str | None = None

    def object(self) -> dict[str, str]:
        out = {"link": self.link} if self.link else {"id": self.id or ""}
        if self.kind == "document" and self.filename:
            out["filename"] = self.filename
        return out


def _is_url(value: str) -> bool:
    return value.startswith(("https://", "http://"))


def media_ref(attachment: str) -> MediaRef:
    """Media type and source of an attachment.

    ``<mime>:<url>`` (``image/jpeg:https://...``) or ``<kind>:<url|media id>`` (``video:...``)
    decides the type; else the URL's extension (jpg/png image, webp sticker, mp4/3gp video,
    mp3/ogg/opus/aac/amr/m4a audio); any other file is a document, named after the URL's file.
    """
    value = attachment.strip()
    kind: str | None = None
    match = _PREFIX.match(value)
    if match and not _is_url(value):
        prefix, value = match["prefix"].lower(), match["rest"].strip()
        major = prefix.split("/", 1)[0]
        if prefix in ("image/webp",):
            kind = "sticker"
        elif major in ("image", "video", "audio"):
            kind = major
        elif prefix in MEDIA_KINDS:
            kind = prefix
        else:  # application/pdf, text/csv, ...
            kind = "document"
    path = unquote(urlparse(value).path) if _is_url(value) else ""
    filename = path.rsplit("/", 1)[-1] or None
    if kind is None:
        if not _is_url(value):
            raise OutboundError(
                "attachment_invalid", f"attachment {attachment!r} is neither a URL nor typed"
            )
        ext = filename.rsplit(".", 1)[-1].lower() if filename and "." in filename else ""
        kind = EXTENSIONS.get(ext, "document")
    if _is_url(value):
        return MediaRef(kind, link=value, filename=filename)
    if not value.isdigit():
        raise OutboundError("attachment_invalid", f"attachment {attachment!r}: not a URL or id")
    return MediaRef(kind, id=value)


def _base(message: Mapping[str, Any]) -> dict[str, Any]:
    urn = message.get("urn")
    if not isinstance(urn, str):
        raise OutboundError("no_urn", "the message has no WhatsApp URN")
    try:
        target = send_target(urn)
    except ValueError as exc:
        raise OutboundError("invalid_urn", str(exc)) from None
    body: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual"}
    body.update(target)
    reply_to = message.get("reply_to")
    if reply_to:
        body["context"] = {"message_id": str(reply_to)}
    return body


def build_send(
    message: Mapping[str, Any],
    *,
    template_info: TemplateInfo | None = None,
    list_button: str = "Options",
) -> dict[str, Any]:
    """The Graph body for one message record (see the module doc for the mapping).

    ``template_info`` (the cached definition) refines template sends: media header type, named
    header parameter, button indexes. ``list_button`` labels the button that opens a list.
    """
    body = _base(message)
    template = message.get("template")
    if template:
        if not isinstance(template, Mapping):
            raise OutboundError("template_invalid", "template is not a mapping")
        body["type"] = "template"
        body["template"] = build_template(template, template_info)
        return body
    text = message.get("text") or None
    if text is not None and not isinstance(text, str):
        raise OutboundError("text_invalid", "text is not a string")
    if text and len(text) > TEXT_MAX:
        raise OutboundError("text_too_long", f"text has {len(text)} characters, max {TEXT_MAX}")
    replies = [str(q) for q in message.get("quick_replies") or []]
    attachment = message.get("attachment") or None
    media = media_ref(str(attachment)) if attachment else None
    if replies:
        body["type"] = "interactive"
        body["interactive"] = _interactive(text, replies, media, list_button)
    elif media:
        obj: dict[str, Any] = media.object()
        if text:
            if media.kind not in CAPTIONED:
                raise OutboundError(
                    "caption_not_supported", f"a {media.kind} cannot carry text; send it apart"
                )
            if len(text) > CAPTION_MAX:
                raise OutboundError("caption_too_long", f"caption over {CAPTION_MAX} characters")
            obj["caption"] = text
        body["type"] = media.kind
        body[media.kind] = obj
    elif text:
        body["type"] = "text"
        body["text"] = {"preview_url": bool(message.get("preview_url")), "body": text}
    else:
        raise OutboundError("empty_message", "nothing to send")
    return body


def _interactive(
    text: str | None, replies: list[str], media: MediaRef | None, list_button: str
) -> dict[str, Any]:
    if not text:
        raise OutboundError("quick_replies_without_text", "quick replies need a text")
    if any(not r.strip() for r in replies):
        raise OutboundError("quick_reply_empty", "a quick reply has an empty title")
    if len(set(replies)) != len(replies):
        raise OutboundError("quick_replies_duplicate", "quick reply titles must be unique")
    use_buttons = (
        len(replies) <= BUTTONS_MAX
        and all(len(r) <= BUTTON_TITLE_MAX for r in replies)
        and len(text) <= BUTTON_BODY_MAX
    )
    if use_buttons:
        out: dict[str, Any] = {
            "type": "button",
            "body": {"text": text},
            "action": {
                "buttons": [
                    {"type": "reply", "reply": {"id": r[:BUTTON_ID_MAX], "title": r}}
                    for r in replies
                ]
            },
        }
        if media:
            if media.kind not in CAPTIONED:
                raise OutboundError(
                    "attachment_not_allowed", f"a {media.kind} cannot head a button message"
                )
            out["header"] = {"type": media.kind, media.kind: media.object()}
        return out
    if len(replies) > ROWS_MAX:
        raise OutboundError(
            "too_many_quick_replies", f"{len(replies)} quick replies, a list holds {ROWS_MAX}"
        )
    if media:
        raise OutboundError(
            "attachment_not_allowed", "a list message takes no media; use at most 3 short replies"
        )
    ids = [r[:ROW_ID_MAX] for r in replies]
    if len(set(ids)) != len(ids):
        raise OutboundError("quick_replies_duplicate", "quick reply ids collide after truncation")
    return {
        "type": "list",
        "body": {"text": text},
        "action": {
            "button": truncate(list_button, LIST_BUTTON_MAX),
            "sections": [{"rows": [_row(r, i) for r, i in zip(replies, ids, strict=True)]}],
        },
    }


def truncate(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, the last one being ``…`` when it was cut."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + ELLIPSIS


def _row(title: str, row_id: str) -> dict[str, str]:
    row = {"id": row_id, "title": truncate(title, ROW_TITLE_MAX)}
    if len(title) > ROW_TITLE_MAX:
        row["description"] = truncate(title, ROW_DESCRIPTION_MAX)
    return row


# ---------------------------------------------------------------- templates


def build_template(t: Mapping[str, Any], info: TemplateInfo | None = None) -> dict[str, Any]:
    """The ``template`` object of a send: name, language and the components with parameters."""
    name, language = t.get("name"), t.get("language")
    if not name or not language:
        raise OutboundError("template_invalid", "a template needs a name and a language")
    components: list[dict[str, Any]] = []
    header = [str(h) for h in t.get("header") or []]
    if header:
        components.append(
            {
                "type": "header",
                "parameters": [_header_param(h, i, info) for i, h in enumerate(header)],
            }
        )
    body = t.get("body") or []
    if isinstance(body, Mapping):
        params = [
            {"type": "text", "parameter_name": str(k), "text": str(v)} for k, v in body.items()
        ]
    else:
        params = [{"type": "text", "text": str(v)} for v in body]
    if params:
        components.append({"type": "body", "parameters": params})
    buttons = list(t.get("buttons") or [])
    for i, button in enumerate(buttons):
        kind, index = (
            button_index(info, buttons, i) if isinstance(button, Mapping) else (None, None)
        )
        if kind is None or index is None:
            raise OutboundError(
                "template_button_mismatch", f"template button {i} matches no template button"
            )
        value = str(button[kind])
        param = (
            {"type": "payload", "payload": value}
            if kind == "quick_reply"
            else {"type": "text", "text": value}
        )
        components.append(
            {"type": "button", "sub_type": kind, "index": str(index), "parameters": [param]}
        )
    out: dict[str, Any] = {"name": str(name), "language": {"code": str(language)}}
    if components:
        out["components"] = components
    return out


def _header_param(value: str, i: int, info: TemplateInfo | None) -> dict[str, Any]:
    fmt = info.header.format if info and info.header else None
    geo = _GEO.match(value.strip())
    if fmt == "LOCATION" or (fmt is None and geo):
        if not geo:
            raise OutboundError(
                "template_header_location_invalid", "a LOCATION header needs geo:<lat>,<lon>"
            )
        loc: dict[str, Any] = {"latitude": float(geo["lat"]), "longitude": float(geo["lon"])}
        for key in ("name", "address"):
            if geo[key]:
                loc[key] = unquote(geo[key])
        return {"type": "location", "location": loc}
    if fmt in MEDIA_HEADERS:
        ref = media_ref(value)
        kind = HEADER_KINDS[str(fmt)]
        return {"type": kind, kind: MediaRef(kind, ref.link, ref.id, ref.filename).object()}
    if fmt is None and _is_url(value.strip()):
        # template unknown: a URL is a media header when its extension says image/video/document
        ref = media_ref(value)
        ext = (ref.filename or "").rsplit(".", 1)[-1].lower()
        if ref.kind in ("image", "video") or (ref.kind == "document" and ext in DOC_EXTENSIONS):
            return {"type": ref.kind, ref.kind: ref.object()}
    param: dict[str, Any] = {"type": "text", "text": value}
    if (
        info
        and info.parameter_format == "NAMED"
        and info.header
        and i < len(info.header.params.names)
    ):
        param["parameter_name"] = info.header.params.names[i]
    return param


def build_mark_read(wamid: str, *, typing: bool = False) -> dict[str, Any]:
    """Mark an inbound message read (blue ticks), optionally showing the typing indicator."""
    body: dict[str, Any] = {"messaging_product": "whatsapp", "status": "read", "message_id": wamid}
    if typing:
        body["typing_indicator"] = {"type": "text"}
    return body


@dataclass(frozen=True, slots=True)
class SendAccepted:
    wamid: str
    message_status: str | None = None  # templates: accepted / held_for_quality_assessment
    wa_id: str | None = None
    user_id: str | None = None


def parse_send_response(body: Any) -> SendAccepted | None:
    """The wamid (and resolved recipient) of a 200 answer; None if it carries no message id."""
    if not isinstance(body, Mapping):
        return None
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not isinstance(messages[0], Mapping):
        return None
    wamid = messages[0].get("id")
    if not isinstance(wamid, str) or not wamid:
        return None
    contacts = body.get("contacts")
    contact = contacts[0] if isinstance(contacts, list) and contacts else {}
    contact = contact if isinstance(contact, Mapping) else {}
    status = messages[0].get("message_status")
    return SendAccepted(
        wamid=wamid,
        message_status=status if isinstance(status, str) else None,
        wa_id=contact.get("wa_id") if isinstance(contact.get("wa_id"), str) else None,
        user_id=contact.get("user_id") if isinstance(contact.get("user_id"), str) else None,
    )


def window_open(last_inbound_ts: float | None, now: float, margin: float = 120) -> bool:
    """Whether free-form messages may go: the user wrote less than 24 h minus ``margin`` ago."""
    return last_inbound_ts is not None and now < last_inbound_ts + WINDOW - margin
