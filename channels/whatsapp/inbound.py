"""Inbound side of the WhatsApp Cloud API: a webhook's payload parsed into records.

Pure functions, no I/O. ``parse_webhook`` never raises: an item it cannot read is left out and
described in ``WebhookBatch.skipped`` (``"<path>: <reason>"``), and the rest is parsed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from channels.protocol import Location
from channels.whatsapp.inbound_records import (
    KNOWN_TYPES,
    MEDIA_TYPES,
    OBJECT,
    ErrorDetail,
    InboundMessage,
    Media,
    MessageContext,
    Reaction,
    StatusUpdate,
    TemplateStatusUpdate,
    WebhookBatch,
)
from channels.whatsapp.urns import bsuid_urn, urn_for


class _Skip(Exception):
    """This item cannot be read; the message says why."""


def _obj(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Skip(f"{what} is not an object")
    return value


def _opt_str(obj: Mapping[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _Skip(f"{key} is not a string")
    return str(value)


def _req_str(obj: Mapping[str, Any], key: str) -> str:
    value = _opt_str(obj, key)
    if value is None:
        raise _Skip(f"{key} missing")
    return value


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _req_int(obj: Mapping[str, Any], key: str) -> int:
    value = _int(obj.get(key))
    if value is None:
        raise _Skip(f"{key} missing or not an integer")
    return value


def _float(obj: Mapping[str, Any], key: str) -> float:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _Skip(f"{key} missing or not a number")
    try:
        number = float(value)
    except ValueError:
        raise _Skip(f"{key} is not a number") from None
    if not math.isfinite(number):  # "NaN", "inf", "1e999": stored, then served as invalid JSON
        raise _Skip(f"{key} is not a finite number")
    return number


def _opt_dict(obj: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    value = obj.get(key)
    return value if isinstance(value, dict) else None


def _list(obj: Mapping[str, Any], key: str) -> list[Any]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Skip(f"{key} is not a list")
    return value


def parse_errors(items: Any) -> list[ErrorDetail]:
    """``errors[]`` items (webhooks) as ``ErrorDetail``; unreadable items are dropped."""
    out: list[ErrorDetail] = []
    if not isinstance(items, list):
        return out
    for item in items:
        if isinstance(item, dict):
            out.append(error_detail(item))
    return out


def error_detail(item: Mapping[str, Any]) -> ErrorDetail:
    data = item.get("error_data")
    details = data.get("details") if isinstance(data, dict) else None
    return ErrorDetail(
        code=_int(item.get("code")),
        title=_text(item.get("title")),
        message=_text(item.get("message")),
        details=_text(details),
        href=_text(item.get("href")),
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value != "" else None


def normalise_language(code: str | None) -> str | None:
    return code.replace("-", "_") if code else None


# ---------------------------------------------------------------- parse_webhook


@dataclass(frozen=True, slots=True)
class _Sender:
    wa_id: str | None
    user_id: str | None
    parent_user_id: str | None
    name: str | None
    username: str | None


def parse_webhook(payload: Any) -> WebhookBatch:
    """Every message, status and template status update in one webhook POST body."""
    batch = WebhookBatch()
    if not isinstance(payload, dict):
        batch.skipped.append("payload: not a JSON object")
        return batch
    obj = payload.get("object")
    if obj != OBJECT:
        batch.skipped.append(f"payload: object {obj!r} is not {OBJECT!r}")
        return batch
    entries = payload.get("entry")
    if not isinstance(entries, list):
        batch.skipped.append("entry: missing or not a list")
        return batch
    for i, entry in enumerate(entries):
        where = f"entry[{i}]"
        if not isinstance(entry, dict):
            batch.skipped.append(f"{where}: not an object")
            continue
        changes = entry.get("changes")
        if not isinstance(changes, list):
            batch.skipped.append(f"{where}.changes: missing or not a list")
            continue
        for j, change in enumerate(changes):
            _parse_change(entry, change, f"{where}.changes[{j}]", batch)
    return batch


def _parse_change(entry: dict[str, Any], change: Any, where: str, batch: WebhookBatch) -> None:
    if not isinstance(change, dict):
        batch.skipped.append(f"{where}: not an object")
        return
    fld = change.get("field")
    value = change.get("value")
    if not isinstance(value, dict):
        batch.skipped.append(f"{where}.value: missing or not an object")
        return
    if fld == "messages":
        try:
            _parse_messages_value(value, f"{where}.value", batch)
        except Exception as exc:  # junk must never break the batch
            batch.skipped.append(f"{where}.value: unreadable ({type(exc).__name__}: {exc})")
    elif fld == "message_template_status_update":
        try:
            batch.template_updates.append(_template_update(entry, value))
        except _Skip as exc:
            batch.skipped.append(f"{where}.value: {exc}")
        except Exception as exc:  # junk must never break the batch
            batch.skipped.append(f"{where}.value: unreadable ({type(exc).__name__})")
    else:
        batch.skipped.append(f"{where}: field {fld!r} not handled")


_VALUE_KEYS = frozenset(
    {"messaging_product", "metadata", "contacts", "messages", "statuses", "errors"}
)


def _parse_messages_value(value: dict[str, Any], where: str, batch: WebhookBatch) -> None:
    metadata = value.get("metadata")
    try:
        pnid = _opt_str(metadata, "phone_number_id") if isinstance(metadata, dict) else None
    except _Skip:
        pnid = None
    if pnid is None:
        batch.skipped.append(f"{where}.metadata.phone_number_id: missing or not a string")
        return
    for key in value:
        if key not in _VALUE_KEYS:
            batch.skipped.append(f"{where}.{key}: not handled")
    batch.errors.extend(parse_errors(value.get("errors")))
    senders = _senders(value.get("contacts"), f"{where}.contacts", batch)
    for path, message in _collect(value, "messages", where, batch, _message, pnid, senders):
        batch.messages.append(message)
        note = _note(message)
        if note:
            batch.skipped.append(f"{path}: {note}")
    for _, status in _collect(value, "statuses", where, batch, _status, pnid, senders):
        batch.statuses.append(status)


T = TypeVar("T")


def _collect(
    value: dict[str, Any],
    key: str,
    where: str,
    batch: WebhookBatch,
    parse: Callable[[Any, str, list[_Sender]], T],
    phone_number_id: str,
    senders: list[_Sender],
) -> list[tuple[str, T]]:
    """Parse each item of ``value[key]``; an unreadable item is noted and left out."""
    items = value.get(key)
    if items is None:
        return []
    if not isinstance(items, list):
        batch.skipped.append(f"{where}.{key}: not a list")
        return []
    out: list[tuple[str, T]] = []
    for k, item in enumerate(items):
        path = f"{where}.{key}[{k}]"
        try:
            out.append((path, parse(item, phone_number_id, senders)))
        except _Skip as exc:
            batch.skipped.append(f"{path}: {exc}")
        except Exception as exc:  # junk must never break the batch
            batch.skipped.append(f"{path}: unreadable ({type(exc).__name__}: {exc})")
    return out


def _note(message: InboundMessage) -> str | None:
    if message.errors and not message.supported and message.type != "unsupported":
        codes = ", ".join(str(e.code) for e in message.errors)
        return f"{message.type} message with errors kept as unsupported: {codes}"
    if message.type not in KNOWN_TYPES:
        return f"message type {message.type!r} not understood (kept as unsupported)"
    if message.type == "interactive" and not message.supported:
        kind = (message.data or {}).get("type")
        return f"interactive type {kind!r} not understood (kept as unsupported)"
    return None


def _senders(items: Any, where: str, batch: WebhookBatch) -> list[_Sender]:
    out: list[_Sender] = []
    if items is None:
        return out
    if not isinstance(items, list):
        batch.skipped.append(f"{where}: not a list")
        return out
    for k, item in enumerate(items):
        try:
            c = _obj(item, "contact")
            profile = _opt_dict(c, "profile") or {}
            out.append(
                _Sender(
                    wa_id=_opt_str(c, "wa_id"),
                    user_id=_opt_str(c, "user_id"),
                    parent_user_id=_opt_str(c, "parent_user_id"),
                    name=_text(profile.get("name")),
                    username=_text(profile.get("username")),
                )
            )
        except _Skip as exc:
            batch.skipped.append(f"{where}[{k}]: {exc}")
    return out


def _join(senders: list[_Sender], wa_id: str | None, user_id: str | None) -> _Sender | None:
    for s in senders:
        if (wa_id and s.wa_id == wa_id) or (user_id and s.user_id == user_id):
            return s
    return None


def _message(item: Any, phone_number_id: str, senders: list[_Sender]) -> InboundMessage:
    m = _obj(item, "message")
    wamid = _req_str(m, "id")
    timestamp = _req_int(m, "timestamp")
    mtype = _req_str(m, "type")
    from_ = _opt_str(m, "from")
    from_user = _opt_str(m, "from_user_id")
    sender = _join(senders, from_, from_user)
    wa_id = from_ or (sender.wa_id if sender else None)
    user_id = from_user or (sender.user_id if sender else None)
    if not wa_id and not user_id:
        raise _Skip("no sender (from / from_user_id)")
    try:
        urn_for(wa_id, user_id)
        if wa_id and user_id:
            bsuid_urn(user_id)
    except ValueError as exc:
        raise _Skip(f"sender: {exc}") from None
    context_obj = _opt_dict(m, "context")
    fields: dict[str, Any] = {
        "phone_number_id": phone_number_id,
        "wamid": wamid,
        "timestamp": timestamp,
        "type": mtype,
        "wa_id": wa_id,
        "user_id": user_id,
        "parent_user_id": _opt_str(m, "from_parent_user_id")
        or (sender.parent_user_id if sender else None),
        "profile_name": sender.name if sender else None,
        "username": sender.username if sender else None,
        "context": _context(context_obj) if context_obj is not None else None,
        "referral": _opt_dict(m, "referral"),
        "errors": parse_errors(m.get("errors")),
    }
    try:
        fields.update(_content(m, mtype))
    except _Skip:
        if not fields["errors"]:
            raise
        # Meta could not read it either (an interactive with errors[] and no usable body):
        # keep who sent what and why, as for type "unsupported", rather than drop it
        body = m.get(mtype)
        fields.update(supported=False, data=body if isinstance(body, dict) else None)
    return InboundMessage(**fields)


def _context(c: dict[str, Any]) -> MessageContext:
    frequently = c.get("frequently_forwarded") is True
    return MessageContext(
        id=_opt_str(c, "id"),
        from_=_opt_str(c, "from"),
        forwarded=c.get("forwarded") is True or frequently,
        frequently_forwarded=frequently,
        referred_product=_opt_dict(c, "referred_product"),
    )


def _content(m: dict[str, Any], mtype: str) -> dict[str, Any]:
    """The type-specific fields of one message."""
    body = m.get(mtype)
    data = body if isinstance(body, dict) else None
    if mtype == "text":
        text = _obj(body, "text")
        return {"text": _req_str(text, "body")}
    if mtype == "button":
        b = _obj(body, "button")
        label = _opt_str(b, "text")
        return {"text": label, "payload": _opt_str(b, "payload") or label, "data": b}
    if mtype == "interactive":
        return _interactive(_obj(body, "interactive"))
    if mtype in MEDIA_TYPES:
        obj = _obj(body, mtype)
        media = Media(
            id=_req_str(obj, "id"),
            mime_type=_opt_str(obj, "mime_type"),
            sha256=_opt_str(obj, "sha256"),
            caption=_opt_str(obj, "caption"),
            filename=_opt_str(obj, "filename"),
            url=_opt_str(obj, "url"),
            voice=obj.get("voice") is True,
            animated=obj.get("animated") is True,
        )
        return {"media": media, "text": media.caption}
    if mtype == "location":
        obj = _obj(body, "location")
        loc = Location(
            latitude=_float(obj, "latitude"),
            longitude=_float(obj, "longitude"),
            name=_opt_str(obj, "name"),
            address=_opt_str(obj, "address"),
            url=_opt_str(obj, "url"),
        )
        label = ", ".join(part for part in (loc.name, loc.address) if part)
        return {"location": loc, "text": label or None}
    if mtype == "contacts":
        cards = [c for c in _list(m, "contacts") if isinstance(c, dict)]
        if not cards:
            raise _Skip("contacts: no contact card")
        names = []
        for card in cards:
            name = card.get("name")
            if isinstance(name, dict) and isinstance(name.get("formatted_name"), str):
                names.append(name["formatted_name"])
        return {"contacts": cards, "text": ", ".join(names) or None}
    if mtype == "reaction":
        obj = _obj(body, "reaction")
        return {"reaction": Reaction(_req_str(obj, "message_id"), _opt_str(obj, "emoji"))}
    if mtype == "unsupported":
        return {"supported": False, "data": data}
    if mtype == "system":
        return {"text": _text((data or {}).get("body")), "data": data}
    if mtype in KNOWN_TYPES:  # request_welcome, order, edit, revoke
        return {"data": data}
    return {"supported": False, "data": data}


def _interactive(obj: dict[str, Any]) -> dict[str, Any]:
    kind = obj.get("type")
    if kind in ("button_reply", "list_reply"):
        reply = _obj(obj.get(kind), str(kind))
        title = _opt_str(reply, "title")
        reply_id = _opt_str(reply, "id")
        if title is None and reply_id is None:
            raise _Skip(f"interactive.{kind}: no id nor title")
        return {"text": title, "payload": reply_id or title, "data": obj}
    if kind == "nfm_reply":
        reply = _obj(obj.get("nfm_reply"), "nfm_reply")
        return {
            "text": _opt_str(reply, "body"),
            "payload": _opt_str(reply, "response_json"),
            "data": obj,
        }
    return {"supported": False, "data": obj}


def _status(item: Any, phone_number_id: str, senders: list[_Sender]) -> StatusUpdate:
    s = _obj(item, "status")
    return StatusUpdate(
        phone_number_id=phone_number_id,
        wamid=_req_str(s, "id"),
        status=_req_str(s, "status"),
        timestamp=_req_int(s, "timestamp"),
        recipient_id=_opt_str(s, "recipient_id"),
        recipient_user_id=_opt_str(s, "recipient_user_id"),
        errors=parse_errors(s.get("errors")),
        pricing=_opt_dict(s, "pricing"),
        biz_opaque_callback_data=_opt_str(s, "biz_opaque_callback_data"),
    )


def _template_update(entry: dict[str, Any], v: dict[str, Any]) -> TemplateStatusUpdate:
    return TemplateStatusUpdate(
        waba_id=_opt_str(entry, "id"),
        event=_req_str(v, "event"),
        template_id=_req_str(v, "message_template_id"),
        name=_opt_str(v, "message_template_name"),
        language=normalise_language(_opt_str(v, "message_template_language")),
        reason=_opt_str(v, "reason"),
        category=_opt_str(v, "message_template_category"),
        rejection_info=_opt_dict(v, "rejection_info"),
        other_info=_opt_dict(v, "other_info"),
        disable_info=_opt_dict(v, "disable_info"),
        time=_int(entry.get("time")),
    )
