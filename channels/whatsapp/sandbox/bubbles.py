"""What a message looks like on the contact's phone: a send body (or an inbound message) turned
into the parts a chat bubble shows — header, body with the template's variables filled, footer,
buttons and list rows — and what tapping each button sends back.

Pure functions of the message (and, for templates, the template as the WABA holds it): the
sandbox phone (``phone.py``) renders these with its own autoescaped templates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from channels.whatsapp.sandbox.templates import PLACEHOLDER, Template

MEDIA_KINDS = ("image", "video", "audio", "document", "sticker")


@dataclass(slots=True)
class Button:
    """A button under a bubble. ``tap`` is what tapping it sends: ``("button", index)`` for a
    template's quick reply (its index among the quick replies), ``("interactive", id)`` for an
    interactive reply button or list row; ``None`` for a button the phone only shows (a URL,
    a phone number, a code)."""

    label: str
    tap: tuple[str, str] | None = None
    description: str = ""
    link: str = ""


@dataclass(slots=True)
class View:
    kind: str  # the message type: text, template, interactive, image, ...
    body: str = ""
    header: str = ""  # a text header
    media: str = ""  # a media header or attachment: "image", "video", "document", ...
    footer: str = ""
    template: str = ""  # "name (language)" for a template
    buttons: list[Button] = field(default_factory=list)
    list_label: str = ""  # an interactive list: the button that opens it ...
    rows: list[tuple[str, list[Button]]] = field(default_factory=list)  # ... its sections

    @property
    def preview(self) -> str:
        """One line for the list of chats."""
        text = self.body or self.header or self.media or self.kind
        return text if len(text) <= 60 else text[:59] + "…"


def _s(value: Any) -> str:
    return "" if value is None else str(value)


def _param_text(param: dict[str, Any]) -> str:
    kind = param.get("type", "text")
    if kind == "text":
        return _s(param.get("text"))
    inner = param.get(kind)
    if isinstance(inner, dict):
        return _s(inner.get("fallback_value"))
    return ""


def fill(text: str, params: list[dict[str, Any]], named: bool) -> str:
    """``text`` with its ``{{1}}`` / ``{{name}}`` placeholders replaced by the send's values."""
    if named:
        values = {_s(p.get("parameter_name")): _param_text(p) for p in params}
    else:
        values = {str(i): _param_text(p) for i, p in enumerate(params, start=1)}
    return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def _components(obj: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for comp in obj.get("components") or []:
        if not isinstance(comp, dict):
            continue
        kind = _s(comp.get("type")).lower()
        if kind == "button":
            found.setdefault("buttons", {})[_s(comp.get("index"))] = comp
        else:
            found[kind] = comp
    return found


def _params(comp: Any) -> list[dict[str, Any]]:
    params = comp.get("parameters") if isinstance(comp, dict) else None
    return [p for p in params if isinstance(p, dict)] if isinstance(params, list) else []


def template_view(obj: dict[str, Any], tpl: Template | None) -> View:
    """A template send as WhatsApp shows it: the template's texts with the send's values."""
    name = _s(obj.get("name"))
    language = obj.get("language")
    code = _s(language.get("code")) if isinstance(language, dict) else ""
    view = View("template", template=f"{name} ({code})")
    if tpl is None:  # deleted since: show what we know
        view.body = name
        return view
    given = _components(obj)
    quick = 0
    for comp in tpl.data.get("components", []):
        kind = comp.get("type")
        if kind == "HEADER":
            fmt = comp.get("format", "TEXT")
            if fmt == "TEXT":
                view.header = fill(_s(comp.get("text")), _params(given.get("header")), tpl.named)
            else:
                view.media = _s(fmt).lower()
        elif kind == "BODY":
            view.body = fill(_s(comp.get("text")), _params(given.get("body")), tpl.named)
        elif kind == "FOOTER":
            view.footer = _s(comp.get("text"))
        elif kind == "BUTTONS":
            for button in comp.get("buttons", []):
                label = _s(button.get("text"))
                if button.get("type") == "QUICK_REPLY":
                    view.buttons.append(Button(label, ("button", str(quick))))
                    quick += 1
                else:
                    view.buttons.append(Button(label, link=_s(button.get("url"))))
    return view


def _interactive_view(obj: dict[str, Any]) -> View:
    view = View("interactive")
    header = obj.get("header")
    if isinstance(header, dict):
        if header.get("type") == "text":
            view.header = _s(header.get("text"))
        else:
            view.media = _s(header.get("type"))
    for part in ("body", "footer"):
        value = obj.get(part)
        if isinstance(value, dict):
            setattr(view, part, _s(value.get("text")))
    action = obj.get("action") if isinstance(obj.get("action"), dict) else {}
    assert isinstance(action, dict)
    for button in action.get("buttons") or []:
        reply = button.get("reply") if isinstance(button, dict) else None
        if isinstance(reply, dict):
            view.buttons.append(Button(_s(reply.get("title")), ("interactive", _s(reply["id"]))))
    if obj.get("type") == "list":
        view.list_label = _s(action.get("button"))
        for section in action.get("sections") or []:
            rows = [
                Button(
                    _s(row.get("title")),
                    ("interactive", _s(row.get("id"))),
                    description=_s(row.get("description")),
                )
                for row in section.get("rows") or []
                if isinstance(row, dict)
            ]
            view.rows.append((_s(section.get("title")), rows))
    elif obj.get("type") == "cta_url":
        params = action.get("parameters") if isinstance(action.get("parameters"), dict) else {}
        assert isinstance(params, dict)
        view.buttons.append(Button(_s(params.get("display_text")), link=_s(params.get("url"))))
    return view


def _other(kind: str, obj: Any) -> View:
    view = View(kind)
    if not isinstance(obj, dict):
        if kind == "contacts" and isinstance(obj, list):
            names = [_s((c.get("name") or {}).get("formatted_name")) for c in obj]
            view.body = ", ".join(n for n in names if n)
        return view
    if kind == "text":
        view.body = _s(obj.get("body"))
    elif kind in MEDIA_KINDS:
        view.media = kind
        view.body = _s(obj.get("caption") or obj.get("filename"))
    elif kind == "location":
        where = [_s(obj.get("name")), _s(obj.get("address"))]
        point = f"{obj.get('latitude')}, {obj.get('longitude')}"
        view.body = " · ".join(w for w in where if w) or point
    elif kind == "reaction":
        view.body = _s(obj.get("emoji"))
    return view


def send_view(body: dict[str, Any], tpl: Template | None) -> View:
    """What the contact sees for one accepted send body."""
    kind = _s(body.get("type") or "text")
    obj = body.get(kind)
    if kind == "template" and isinstance(obj, dict):
        return template_view(obj, tpl)
    if kind == "interactive" and isinstance(obj, dict):
        return _interactive_view(obj)
    return _other(kind, obj)


def inbound_view(message: dict[str, Any]) -> View:
    """What the contact wrote (or tapped), as their own bubble shows it."""
    kind = _s(message.get("type") or "text")
    obj = message.get(kind)
    if kind == "button" and isinstance(obj, dict):
        return View(kind, body=_s(obj.get("text")))
    if kind == "interactive" and isinstance(obj, dict):
        reply = obj.get(_s(obj.get("type")))
        title = reply.get("title") if isinstance(reply, dict) else None
        return View(kind, body=_s(title))
    return _other(kind, obj)
