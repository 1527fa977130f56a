"""User messages for ``POST /_fake/inbound``: any type of reference 3.3, shaped as Meta sends.

A tap on a quick reply or an interactive option is tied to the message it answers: ``context``
defaults to the last message sent to that user, and the payload, title and description come
from that send (the label works as the tap: ``{"type": "button", "text": "Sí, lo recibí"}``).
"""

from __future__ import annotations

from typing import Any

from channels.whatsapp.sandbox.config import SandboxNumber
from channels.whatsapp.sandbox.state import SandboxState
from channels.whatsapp.sandbox.validate import Send

MIME = {
    "image": "image/jpeg",
    "video": "video/mp4",
    "audio": "audio/ogg; codecs=opus",
    "document": "application/pdf",
    "sticker": "image/webp",
}


class InboundError(ValueError):
    """The /_fake/inbound body cannot make a message."""


def _opt(spec: dict[str, Any], key: str) -> str | None:
    value = spec.get(key)
    return None if value is None else str(value)


def build_message(
    state: SandboxState, number: SandboxNumber, spec: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``(contact, message)`` items for one user message described by ``spec``."""
    wa_id = _opt(spec, "from")
    if wa_id is not None:
        wa_id = "".join(ch for ch in wa_id if ch.isdigit())
    user_id = _opt(spec, "user_id")
    if not wa_id and not user_id:
        raise InboundError("give 'from' (the user's phone digits) or 'user_id' (a BSUID)")
    kind = str(spec.get("type", "text"))
    at = spec.get("timestamp")
    ts = int(at) if isinstance(at, int | float) else int(state.now())
    wamid = state.new_wamid("IN")
    pnid = number.phone_number_id
    key = wa_id or user_id or ""
    context_id = _opt(spec, "context_id")
    if context_id is None and kind in ("button", "interactive") and "raw" not in spec:
        context_id = state.last_out.get((pnid, key))
    if state.take_fault("omit_context"):
        context_id = None
    answered: Send | None = state.messages.get(context_id) if context_id else None

    message: dict[str, Any] = {}
    if context_id is not None:
        message["context"] = {"from": number.display_phone_number, "id": context_id}
    elif spec.get("forwarded"):
        message["context"] = {"forwarded": True}
    bsuid_only = state.take_fault("bsuid_only") and user_id is not None
    if wa_id and not bsuid_only:
        message["from"] = wa_id
    if user_id:
        message["from_user_id"] = user_id
    message.update({"id": wamid, "timestamp": str(ts), "type": kind})
    if "raw" in spec:
        message[kind] = spec["raw"]
    else:
        last = state.last_out.get((pnid, key))
        content = _content(state, kind, spec, answered, last)
        if content is not None:
            message[kind] = content
    if kind == "unsupported" and "raw" not in spec:
        message["errors"] = [
            {
                "code": 131051,
                "title": "Message type unknown",
                "message": "Message type unknown",
                "error_data": {"details": "Message type is currently not supported."},
            }
        ]

    contact: dict[str, Any] = {"profile": {"name": str(spec.get("name") or "Sandbox User")}}
    if wa_id and not bsuid_only:
        contact["wa_id"] = wa_id
    if user_id:
        contact["user_id"] = user_id
    state.inbound_ids.add(wamid)
    if kind != "reaction":  # reactions are not known to open the window (reference 9.1)
        state.open_window(pnid, wa_id or None, user_id, float(ts))
    return contact, message


def _content(
    state: SandboxState,
    kind: str,
    spec: dict[str, Any],
    answered: Send | None,
    last_out: str | None,
) -> Any:
    text = _opt(spec, "text")
    if kind == "text":
        if not text:
            raise InboundError("a text message needs 'text'")
        return {"body": text}
    if kind == "button":
        return _button(spec, text, answered)
    if kind == "interactive":
        return _interactive(spec, text, answered)
    if kind in MIME:
        return _media(state, kind, spec)
    if kind == "location":
        try:
            out: dict[str, Any] = {
                "latitude": float(spec["latitude"]),
                "longitude": float(spec["longitude"]),
            }
        except (KeyError, TypeError, ValueError):
            raise InboundError("a location needs numeric 'latitude' and 'longitude'") from None
        for src, dst in (("location_name", "name"), ("address", "address"), ("url", "url")):
            if spec.get(src) is not None:
                out[dst] = str(spec[src])
        return out
    if kind == "contacts":
        cards = spec.get("contacts")
        if not isinstance(cards, list) or not cards:
            raise InboundError("a contacts message needs 'contacts': [cards]")
        return cards
    if kind == "reaction":
        target = _opt(spec, "message_id") or last_out
        if target is None:
            raise InboundError("a reaction needs 'message_id' (the wamid reacted to)")
        out = {"message_id": target}
        if spec.get("emoji") is not None:
            out["emoji"] = str(spec["emoji"])
        return out
    if kind == "unsupported":
        return {"type": "poll"}
    return None  # request_welcome and other types without an object


def _button(spec: dict[str, Any], text: str | None, answered: Send | None) -> dict[str, str]:
    label = _opt(spec, "button_text") or text
    payload = _opt(spec, "button_payload")
    index = spec.get("button_index")
    replies = answered.quick_replies if answered is not None else []
    if isinstance(index, int) and 0 <= index < len(replies):
        label, payload = replies[index]
    for reply_label, reply_payload in replies:
        if label is not None and payload is None and reply_label == label:
            payload = reply_payload
        if payload is not None and label is None and reply_payload == payload:
            label = reply_label
    if label is None and payload is None:
        raise InboundError("a button tap needs 'button_text', 'button_payload' or 'button_index'")
    return {"payload": payload or label or "", "text": label or payload or ""}


def _interactive(spec: dict[str, Any], text: str | None, answered: Send | None) -> dict[str, Any]:
    options = answered.options if answered is not None else {}
    option_id = _opt(spec, "interactive_id")
    if option_id is None and text is not None:  # tapped by its title
        option_id = next((k for k, (title, _) in options.items() if title == text), None)
    if option_id is None:
        raise InboundError("an interactive reply needs 'interactive_id' (or the option's title)")
    title, description = options.get(option_id, (None, None))
    title = _opt(spec, "interactive_title") or title or text or option_id
    description = _opt(spec, "interactive_description") or description
    kind = _opt(spec, "interactive_type")
    if kind is None:
        is_list = answered is not None and answered.interactive_type == "list"
        kind = "list_reply" if is_list else "button_reply"
    reply: dict[str, str] = {"id": option_id, "title": title}
    if kind == "list_reply" and description is not None:
        reply["description"] = description
    return {"type": kind, kind: reply}


def _media(state: SandboxState, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    mime = _opt(spec, "mime_type") or MIME[kind]
    content = str(spec.get("media_content") or f"sandbox {kind} {state.now()}").encode()
    media_id = state.add_media(mime, content)
    out: dict[str, Any] = {}
    if spec.get("caption") is not None and kind in ("image", "video", "document"):
        out["caption"] = str(spec["caption"])
    if kind == "document":
        out["filename"] = _opt(spec, "filename") or "document.pdf"
    out.update({"mime_type": mime, "sha256": state.media[media_id].sha256, "id": media_id})
    if kind == "audio" and spec.get("voice"):
        out["voice"] = True
    if kind == "sticker":
        out["animated"] = bool(spec.get("animated", False))
    return out
