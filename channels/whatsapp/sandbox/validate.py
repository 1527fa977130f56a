"""Validation of a send body, steps 1-4 of reference 12.1, with Meta's error codes.

Structure problems (unknown type, missing or mistyped fields) are code 100; values outside the
documented limits (lengths, counts, duplicate IDs, ranges) are 131009; template mismatches are
1320xx. Rate limits and the window (steps 5-6) are the send pipeline's, in ``send.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from channels.whatsapp.sandbox.errors import GraphError
from channels.whatsapp.sandbox.templates import (
    BUTTON_SUBTYPES,
    MEDIA_FORMATS,
    Template,
    TemplateStore,
)

MEDIA_TYPES = ("image", "audio", "video", "document", "sticker")
CAPTIONED = ("image", "video", "document")
TYPES = ("text", "template", "interactive", "location", "contacts", "reaction", *MEDIA_TYPES)


@dataclass
class Send:
    """A valid send, with what later steps and the inbound builder need."""

    type: str
    input: str  # `to` (or `recipient`) verbatim
    wa_id: str | None  # digits of `to`
    user_id: str | None  # BSUID of `recipient` when `to` is absent
    biz_opaque: str | None = None
    template: Template | None = None
    # For inbound taps on this message: quick-reply (label, payload) by button index, or the
    # interactive reply options {id: (title, description)} and the interactive type.
    quick_replies: list[tuple[str, str]] = field(default_factory=list)
    options: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    interactive_type: str | None = None

    @property
    def key(self) -> str:
        return self.wa_id or self.user_id or self.input


def invalid(detail: str) -> GraphError:
    return GraphError(100, detail)


def out_of_range(detail: str) -> GraphError:
    return GraphError(131009, detail)


def _obj(parent: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = parent.get(key)
    if not isinstance(value, dict):
        raise invalid(f"{where}{key} must be an object")
    return value


def _str(
    parent: dict[str, Any], key: str, where: str, limit: int, *, required: bool = True
) -> str | None:
    value = parent.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value):
        raise invalid(f"{where}{key} is required and must be a non-empty string")
    if len(value) > limit:
        raise out_of_range(f"{where}{key} is {len(value)} characters long; the limit is {limit}")
    return value


def validate_send(body: dict[str, Any], templates: TemplateStore) -> Send:
    """Steps 2-4 of 12.1 for a non-read body (step 1 and mark-as-read are the caller's)."""
    to, recipient = body.get("to"), body.get("recipient")
    if to is None and recipient is None:
        raise GraphError(131008, "The parameter to is required.")
    if to is not None:
        if not isinstance(to, str | int):
            raise invalid("to must be a phone number string")
        digits = "".join(ch for ch in str(to) if ch.isdigit())
        if not digits:
            raise invalid(f"to ({to}) is not a phone number")
        send_input, wa_id, user_id = str(to), digits, None
    else:
        if not isinstance(recipient, str) or not recipient:
            raise invalid("recipient must be a business-scoped user ID")
        send_input, wa_id, user_id = recipient, None, recipient
    kind = body.get("type", "text")
    if kind not in TYPES:
        raise invalid(f"type must be one of {', '.join(TYPES)}; got {kind!r}")
    send = Send(type=kind, input=send_input, wa_id=wa_id, user_id=user_id)
    biz = body.get("biz_opaque_callback_data")
    if biz is not None:
        if not isinstance(biz, str):
            raise invalid("biz_opaque_callback_data must be a string")
        if len(biz) > 512:
            raise out_of_range("biz_opaque_callback_data is longer than 512 characters")
        send.biz_opaque = biz
    context = body.get("context")
    if context is not None and (
        not isinstance(context, dict) or not isinstance(context.get("message_id"), str)
    ):
        raise invalid('context must be {"message_id": "<wamid>"}')
    obj = _obj(body, kind, "")
    if kind == "text":
        _str(obj, "body", "text.", 4096)
        if not isinstance(obj.get("preview_url", False), bool):
            raise invalid("text.preview_url must be a boolean")
    elif kind == "interactive":
        _interactive(obj, send)
    elif kind in MEDIA_TYPES:
        _media(obj, kind, f"{kind}.")
        if "caption" in obj:
            if kind not in CAPTIONED:
                raise invalid(f"{kind} messages take no caption")
            _str(obj, "caption", f"{kind}.", 1024)
        if "filename" in obj and kind != "document":
            raise invalid(f"{kind} messages take no filename")
    elif kind == "location":
        _location(obj)
    elif kind == "contacts":
        _contacts(body.get("contacts"))
    elif kind == "reaction":
        _str(obj, "message_id", "reaction.", 256)
        if not isinstance(obj.get("emoji", ""), str):
            raise invalid("reaction.emoji must be a string (empty removes the reaction)")
    elif kind == "template":
        _template(obj, send, templates)
    return send


def _media(obj: dict[str, Any], kind: str, where: str) -> None:
    has_id, has_link = isinstance(obj.get("id"), str), isinstance(obj.get("link"), str)
    if has_id == has_link:
        raise invalid(f"{where[:-1]} needs exactly one of id or link")
    if has_link and not str(obj["link"]).startswith(("http://", "https://")):
        raise out_of_range(f"{where}link must be an http(s) URL")


def _location(obj: dict[str, Any]) -> None:
    for key, bound in (("latitude", 90.0), ("longitude", 180.0)):
        value = obj.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise invalid(f"location.{key} is required and must be a number")
        try:
            number = float(value)
        except ValueError:
            raise invalid(f"location.{key} must be a number") from None
        if not -bound <= number <= bound:
            raise out_of_range(f"location.{key} must be between -{bound:g} and {bound:g}")
    for key in ("name", "address"):
        _str(obj, key, "location.", 1000, required=False)


def _contacts(cards: object) -> None:
    if not isinstance(cards, list) or not cards:
        raise invalid("contacts must be a non-empty list of contact cards")
    for card in cards:
        if not isinstance(card, dict):
            raise invalid("every contact card must be an object")
        _str(_obj(card, "name", "contacts[]."), "formatted_name", "contacts[].name.", 1000)


def _interactive(obj: dict[str, Any], send: Send) -> None:
    kind = obj.get("type")
    send.interactive_type = kind if isinstance(kind, str) else None
    action = _obj(obj, "action", "interactive.")
    footer = obj.get("footer")
    if footer is not None:
        _str(_obj(obj, "footer", "interactive."), "text", "interactive.footer.", 60)
    if kind == "button":
        _str(_obj(obj, "body", "interactive."), "text", "interactive.body.", 1024)
        _header(obj, media=True)
        buttons = action.get("buttons")
        if not isinstance(buttons, list) or not buttons:
            raise invalid("interactive.action.buttons must be a non-empty list")
        if len(buttons) > 3:
            raise out_of_range(f"interactive.action.buttons has {len(buttons)} buttons; max 3")
        for button in buttons:
            if not isinstance(button, dict) or button.get("type") != "reply":
                raise invalid('every button must be {"type": "reply", "reply": {...}}')
            reply = _obj(button, "reply", "interactive.action.buttons[].")
            bid = _str(reply, "id", "interactive.action.buttons[].reply.", 256)
            title = _str(reply, "title", "interactive.action.buttons[].reply.", 20)
            assert bid is not None and title is not None
            if bid in send.options:
                raise out_of_range(f"button id {bid!r} is used twice")
            send.options[bid] = (title, None)
    elif kind == "list":
        _str(_obj(obj, "body", "interactive."), "text", "interactive.body.", 4096)
        _header(obj, media=False)
        _str(action, "button", "interactive.action.", 20)
        sections = action.get("sections")
        if not isinstance(sections, list) or not sections:
            raise invalid("interactive.action.sections must be a non-empty list")
        if len(sections) > 10:
            raise out_of_range(f"{len(sections)} sections; max 10")
        for section in sections:
            if not isinstance(section, dict):
                raise invalid("every section must be an object")
            _str(section, "title", "sections[].", 24, required=len(sections) > 1)
            rows = section.get("rows")
            if not isinstance(rows, list) or not rows:
                raise invalid("every section needs a non-empty rows list")
            for row in rows:
                if not isinstance(row, dict):
                    raise invalid("every row must be an object")
                rid = _str(row, "id", "rows[].", 200)
                title = _str(row, "title", "rows[].", 24)
                desc = _str(row, "description", "rows[].", 72, required=False)
                assert rid is not None and title is not None
                if rid in send.options:
                    raise out_of_range(f"row id {rid!r} is used twice")
                send.options[rid] = (title, desc)
        if len(send.options) > 10:
            raise out_of_range(f"the list has {len(send.options)} rows; max 10 in total")
    elif kind in ("cta_url", "flow", "product_list", "location_request_message"):
        _obj(obj, "body", "interactive.")
    elif kind == "product":
        pass
    else:
        raise invalid(f"interactive.type {kind!r} is not supported")


def _header(obj: dict[str, Any], *, media: bool) -> None:
    header = obj.get("header")
    if header is None:
        return
    if not isinstance(header, dict):
        raise invalid("interactive.header must be an object")
    kind = header.get("type")
    if kind == "text":
        _str(header, "text", "interactive.header.", 60)
    elif media and kind in ("image", "video", "document"):
        _media(_obj(header, kind, "interactive.header."), kind, f"interactive.header.{kind}.")
    else:
        raise invalid(f"interactive.header.type {kind!r} is not allowed here")


TEXTUAL = ("text", "currency", "date_time")


def _template(obj: dict[str, Any], send: Send, templates: TemplateStore) -> None:
    name = obj.get("name")
    language = obj.get("language")
    if not isinstance(name, str) or not name:
        raise invalid("template.name is required")
    if not isinstance(language, dict) or not isinstance(language.get("code"), str):
        raise invalid("template.language.code is required")
    code = language["code"]
    components = obj.get("components", [])
    if not isinstance(components, list) or not all(isinstance(c, dict) for c in components):
        raise invalid("template.components must be a list of objects")
    tpl = templates.get(name, code)
    if tpl is None:
        raise GraphError(132001, f"template name ({name}) does not exist in {code}")
    if tpl.status == "PAUSED":
        raise GraphError(132015, f"template ({name}) in {code} is paused")
    if tpl.status == "DISABLED":
        raise GraphError(132016, f"template ({name}) in {code} is disabled")
    if tpl.status != "APPROVED":
        raise GraphError(132001, f"template ({name}) in {code} is {tpl.status}, not APPROVED")
    send.template = tpl
    header: dict[str, Any] | None = None
    body: dict[str, Any] | None = None
    buttons: dict[int, dict[str, Any]] = {}
    for comp in components:
        kind = str(comp.get("type", "")).lower()
        params = comp.get("parameters", [])
        if not isinstance(params, list) or not all(isinstance(p, dict) for p in params):
            raise invalid(f"{kind}: parameters must be a list of objects")
        if kind == "header":
            header = comp
        elif kind == "body":
            body = comp
        elif kind == "button":
            index = _button_index(comp)
            if index in buttons:
                raise invalid(f"two button components for index {index}")
            buttons[index] = comp
        else:
            raise invalid(f"template component type {comp.get('type')!r} is not supported")
    only_body = not tpl.header_params and tpl.header_format not in MEDIA_FORMATS and not buttons
    _template_header(tpl, header)
    _template_text("body", tpl.body_params, tpl.named, body, 32768 if only_body else 1024)
    _template_buttons(tpl, buttons, send)


def _button_index(comp: dict[str, Any]) -> int:
    index = comp.get("index")
    if isinstance(index, str) and index.isdigit():
        index = int(index)
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index <= 9:
        raise invalid("button index must be 0-9 (a string or an integer)")
    return index


def _params(comp: dict[str, Any] | None) -> list[dict[str, Any]]:
    return list(comp.get("parameters", [])) if comp is not None else []


def _count(where: str, given: int, expected: int) -> None:
    if given != expected:
        raise GraphError(
            132000,
            f"{where}: number of localizable_params ({given}) does not match the expected "
            f"number of params ({expected})",
        )


def _template_header(tpl: Template, header: dict[str, Any] | None) -> None:
    fmt = tpl.header_format
    if fmt in MEDIA_FORMATS:
        params = _params(header)
        kind = params[0].get("type") if params else None
        if kind != MEDIA_FORMATS[fmt]:
            got = str(kind).upper() if kind else "UNKNOWN"
            raise GraphError(132012, f"header: Format mismatch, expected {fmt}, received {got}")
        _count("header", len(params), 1)
        media = params[0].get(MEDIA_FORMATS[fmt])
        if not isinstance(media, dict):
            raise invalid(f"header: the {kind} parameter needs an {kind} object")
        _media(media, str(kind), f"header.{kind}.")
        return
    _template_text("header", tpl.header_params, tpl.named, header, 60)


def _template_text(
    where: str, expected: list[str], named: bool, comp: dict[str, Any] | None, limit: int
) -> None:
    params = _params(comp)
    _count(where, len(params), len(expected))
    names = []
    for param in params:
        kind = param.get("type")
        if kind not in TEXTUAL:
            raise GraphError(132012, f"{where}: parameter type {kind!r} is not allowed here")
        if kind == "text":
            text = param.get("text")
            if not isinstance(text, str) or not text:
                raise invalid(f"{where}: a text parameter needs a non-empty text")
            if len(text) > limit:
                raise out_of_range(f"{where}: a parameter is longer than {limit} characters")
        elif not isinstance(param.get(kind), dict) or "fallback_value" not in param[kind]:
            raise invalid(f"{where}: a {kind} parameter needs {kind}.fallback_value")
        names.append(param.get("parameter_name"))
    if named:
        if sorted(map(str, names)) != sorted(expected) or None in names:
            raise GraphError(
                132012,
                f"{where}: expected named parameters {expected}, received {names}",
            )
    elif any(n is not None for n in names):
        raise GraphError(132012, f"{where}: the template takes positional parameters")


def _template_buttons(tpl: Template, given: dict[int, dict[str, Any]], send: Send) -> None:
    for index, comp in given.items():
        sub_type = str(comp.get("sub_type", "")).lower()
        if not sub_type:
            raise invalid(f"button {index}: sub_type is required")
        wanted = BUTTON_SUBTYPES.get(sub_type)
        button = tpl.buttons[index] if index < len(tpl.buttons) else None
        if button is None or wanted is None or button.get("type") != wanted:
            have = button.get("type") if button else "no button"
            raise GraphError(
                132012, f"button {index}: sub_type {sub_type} does not match the template ({have})"
            )
        if wanted == "URL" and "{{" not in str(button.get("url", "")):
            raise GraphError(132012, f"button {index}: the template's URL takes no parameter")
        params = _params(comp)
        _count(f"button {index}", len(params), 1)
        expected_type = {"QUICK_REPLY": "payload", "URL": "text", "COPY_CODE": "coupon_code"}
        ptype = expected_type.get(wanted)
        if ptype is not None and params[0].get("type") != ptype:
            raise GraphError(132012, f"button {index}: expected a {ptype} parameter")
    for index, button in enumerate(tpl.buttons):
        dynamic = button.get("type") == "URL" and "{{" in str(button.get("url", ""))
        if dynamic and index not in given:
            raise GraphError(131008, f"button {index}: the dynamic URL needs a parameter")
        if button.get("type") == "QUICK_REPLY":
            label = str(button.get("text", ""))
            payload = label
            if index in given:
                payload = str(_params(given[index])[0].get("payload") or label)
            send.quick_replies.append((label, payload))
