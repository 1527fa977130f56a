"""The WABA's message templates: the demo seed, creation checks, listing with cursors.

Templates are stored exactly as the Graph API lists them (reference section 8.1): uppercase
component types, ``format``, ``text``, ``example``, ``buttons``, ``parameter_format``. Each one
is also parsed once, at insert, into what send validation needs (placeholders, header format,
buttons), so a send never re-reads the components.
"""

from __future__ import annotations

import base64
import copy
import re
from dataclasses import dataclass, field
from typing import Any

from channels.whatsapp.sandbox.errors import GraphError

PLACEHOLDER = re.compile(r"\{\{\s*([^{}\s]*)\s*\}\}")
NAMED = re.compile(r"^[a-z_][a-z0-9_]*$")
NAME = re.compile(r"^[a-z0-9_]{1,512}$")
LANGUAGE = re.compile(r"^[a-z]{2,3}(_[A-Z]{2,4})?$")
CATEGORIES = ("MARKETING", "UTILITY", "AUTHENTICATION")
MEDIA_FORMATS = {"IMAGE": "image", "VIDEO": "video", "GIF": "video", "DOCUMENT": "document"}
# sub_type of a send's button component -> the template button type it must point at
BUTTON_SUBTYPES = {
    "quick_reply": "QUICK_REPLY",
    "url": "URL",
    "copy_code": "COPY_CODE",
    "flow": "FLOW",
    "catalog": "CATALOG",
    "mpm": "MPM",
    "otp": "OTP",
}
FIRST_ID = 771203948812300


def placeholders(text: str | None) -> list[str]:
    """Distinct placeholder names of a text, in order of appearance."""
    seen: list[str] = []
    for name in PLACEHOLDER.findall(text or ""):
        if name not in seen:
            seen.append(name)
    return seen


@dataclass
class Template:
    data: dict[str, Any]  # as the Graph API returns it
    header_format: str | None = None  # TEXT, IMAGE, VIDEO, GIF, DOCUMENT, LOCATION
    header_params: list[str] = field(default_factory=list)
    body_params: list[str] = field(default_factory=list)
    buttons: list[dict[str, Any]] = field(default_factory=list)

    @property
    def id(self) -> str:
        return str(self.data["id"])

    @property
    def name(self) -> str:
        return str(self.data["name"])

    @property
    def language(self) -> str:
        return str(self.data["language"])

    @property
    def status(self) -> str:
        return str(self.data["status"])

    @property
    def category(self) -> str:
        return str(self.data.get("category", "UTILITY"))

    @property
    def named(self) -> bool:
        return self.data.get("parameter_format") == "NAMED"

    @classmethod
    def parse(cls, data: dict[str, Any]) -> Template:
        tpl = cls(data)
        for comp in data.get("components", []):
            kind = comp.get("type")
            if kind == "HEADER":
                tpl.header_format = comp.get("format", "TEXT")
                if tpl.header_format == "TEXT":
                    tpl.header_params = placeholders(comp.get("text"))
            elif kind == "BODY":
                tpl.body_params = placeholders(comp.get("text"))
            elif kind == "BUTTONS":
                tpl.buttons = list(comp.get("buttons", []))
        return tpl


def _qr(text: str) -> dict[str, Any]:
    return {"type": "QUICK_REPLY", "text": text}


def demo_templates() -> list[dict[str, Any]]:
    """The default seed: templates of the demo flows plus a rejected and a paused one."""
    return [
        {
            "name": "order_delivered",
            "language": "es",
            "status": "APPROVED",
            "category": "UTILITY",
            "parameter_format": "POSITIONAL",
            "components": [
                {
                    "type": "BODY",
                    "text": "Hola {{1}}, tu pedido {{2}} fue entregado. ¿Lo recibiste?",
                    "example": {"body_text": [["Ana", "A-1042"]]},
                },
                {"type": "BUTTONS", "buttons": [_qr("Sí, lo recibí"), _qr("No lo recibí")]},
            ],
        },
        {
            "name": "order_delivered",
            "language": "pt_BR",
            "status": "APPROVED",
            "category": "UTILITY",
            "parameter_format": "POSITIONAL",
            "components": [
                {
                    "type": "BODY",
                    "text": "Olá {{1}}, seu pedido {{2}} foi entregue. Você recebeu?",
                    "example": {"body_text": [["Bruno", "A-1042"]]},
                },
                {"type": "BUTTONS", "buttons": [_qr("Sim, recebi"), _qr("Não recebi")]},
            ],
        },
        {
            "name": "appointment_reminder",
            "language": "en",
            "status": "APPROVED",
            "category": "UTILITY",
            "parameter_format": "NAMED",
            "components": [
                {
                    "type": "HEADER",
                    "format": "IMAGE",
                    "example": {
                        "header_handle": ["https://demo.chasqui.example/samples/agenda.png"]
                    },
                },
                {
                    "type": "BODY",
                    "text": "Hi {{first_name}}, a reminder of your appointment at {{time}}.",
                    "example": {
                        "body_text_named_params": [
                            {"param_name": "first_name", "example": "Ana"},
                            {"param_name": "time", "example": "Thursday 3 pm"},
                        ]
                    },
                },
                {"type": "FOOTER", "text": "Chasqui Demo"},
            ],
        },
        {
            "name": "welcome",
            "language": "en",
            "status": "APPROVED",
            "category": "MARKETING",
            "parameter_format": "POSITIONAL",
            "components": [
                {"type": "BODY", "text": "Welcome to Chasqui Demo! Reply to this message to start."}
            ],
        },
        {
            "name": "promo_rejected",
            "language": "es",
            "status": "REJECTED",
            "category": "MARKETING",
            "parameter_format": "POSITIONAL",
            "rejected_reason": "INVALID_FORMAT",
            "components": [
                {
                    "type": "BODY",
                    "text": "Hola {{1}}{{2}}, esta semana todo al 2x1.",
                    "example": {"body_text": [["Ana", "!"]]},
                }
            ],
        },
        {
            "name": "paused_promo",
            "language": "en",
            "status": "PAUSED",
            "category": "MARKETING",
            "parameter_format": "POSITIONAL",
            "components": [{"type": "BODY", "text": "Our weekend promo is back. Reply to see it."}],
        },
    ]


def _cursor(template_id: str) -> str:
    return base64.urlsafe_b64encode(template_id.encode()).decode().rstrip("=")


def _uncursor(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise GraphError(100, f"Invalid cursor: {cursor}") from None


@dataclass
class Page:
    items: list[Template]
    before: str | None
    after: str | None
    has_next: bool
    has_previous: bool


class TemplateStore:
    def __init__(self) -> None:
        self.by_id: dict[str, Template] = {}
        self.by_key: dict[tuple[str, str], Template] = {}
        self._next_id = FIRST_ID

    def seed(self, templates: list[dict[str, Any]]) -> list[Template]:
        """Insert templates as given (uppercased where the API uppercases); replace same keys."""
        added = []
        for data in templates:
            data = normalise(copy.deepcopy(data))
            data.setdefault("status", "APPROVED")
            old = self.by_key.get((data["name"], data["language"]))
            if old is not None:
                data.setdefault("id", old.id)
                del self.by_id[old.id]
            added.append(self.add(data))
        return added

    def add(self, data: dict[str, Any]) -> Template:
        if "id" not in data:
            data = {"id": self.new_id(), **data}
        data["id"] = str(data["id"])
        tpl = Template.parse(data)
        self.by_id[tpl.id] = tpl
        self.by_key[(tpl.name, tpl.language)] = tpl
        return tpl

    def new_id(self) -> str:
        while str(self._next_id) in self.by_id:
            self._next_id += 1
        self._next_id += 1
        return str(self._next_id - 1)

    def get(self, name: str, language: str) -> Template | None:
        return self.by_key.get((name, language))

    def remove(self, tpl: Template) -> None:
        self.by_id.pop(tpl.id, None)
        if self.by_key.get((tpl.name, tpl.language)) is tpl:
            del self.by_key[(tpl.name, tpl.language)]

    def find(self, name: str, language: str | None = None) -> list[Template]:
        return [
            t
            for t in self.by_id.values()
            if t.name == name and (language is None or t.language == language)
        ]

    def page(
        self,
        *,
        limit: int,
        after: str | None = None,
        before: str | None = None,
        status: str | None = None,
        name: str | None = None,
        language: str | None = None,
        category: str | None = None,
    ) -> Page:
        statuses = {s.strip().upper() for s in status.split(",")} if status else None
        matches = [
            t
            for t in self.by_id.values()
            if (statuses is None or t.status in statuses)
            and (name is None or name in t.name)
            and (language is None or t.language == language)
            and (category is None or t.category == category.upper())
        ]
        start, end = 0, len(matches)
        ids = [t.id for t in matches]
        if after:
            anchor = _uncursor(after)
            start = ids.index(anchor) + 1 if anchor in ids else len(ids)
            end = min(len(ids), start + limit)
        elif before:
            anchor = _uncursor(before)
            end = ids.index(anchor) if anchor in ids else 0
            start = max(0, end - limit)
        else:
            end = min(len(ids), limit)
        items = matches[start:end]
        return Page(
            items=items,
            before=_cursor(items[0].id) if items else None,
            after=_cursor(items[-1].id) if items else None,
            has_next=end < len(ids),
            has_previous=start > 0,
        )


def render(tpl: Template, fields: list[str] | None) -> dict[str, Any]:
    """The template as the API shows it; ``fields`` restricts it (``id`` is always there)."""
    if not fields:
        return tpl.data
    out = {f: tpl.data[f] for f in fields if f in tpl.data and f != "id"}
    out["id"] = tpl.id
    return out


def normalise(data: dict[str, Any]) -> dict[str, Any]:
    """Uppercase what the API uppercases (category, parameter_format, component types)."""
    if isinstance(data.get("category"), str):
        data["category"] = data["category"].upper()
    data["parameter_format"] = str(data.get("parameter_format") or "POSITIONAL").upper()
    for comp in data.get("components") or []:
        if isinstance(comp, dict):
            if isinstance(comp.get("type"), str):
                comp["type"] = comp["type"].upper()
            if comp["type"] == "HEADER":
                comp["format"] = str(comp.get("format") or "TEXT").upper()
            for button in comp.get("buttons") or []:
                if isinstance(button, dict) and isinstance(button.get("type"), str):
                    button["type"] = button["type"].upper()
    return data


def _bad(detail: str, subcode: int | None = None) -> GraphError:
    return GraphError(100, detail, subcode=subcode)


def validate_new(store: TemplateStore, body: dict[str, Any]) -> dict[str, Any]:
    """Check a creation request (reference 8.5); the normalised template, status PENDING."""
    name, language = body.get("name"), body.get("language")
    if not isinstance(name, str) or not NAME.match(name):
        raise _bad("name must be 1-512 lowercase letters, digits or underscores")
    if not isinstance(language, str) or not LANGUAGE.match(language):
        raise _bad(f"language {language!r} is not a valid locale code, e.g. es or pt_BR")
    category = body.get("category")
    if not isinstance(category, str) or category.upper() not in CATEGORIES:
        raise _bad("category must be one of MARKETING, UTILITY, AUTHENTICATION")
    fmt = str(body.get("parameter_format") or "POSITIONAL").upper()
    if fmt not in ("POSITIONAL", "NAMED"):
        raise _bad("parameter_format must be POSITIONAL or NAMED")
    components = body.get("components")
    if not isinstance(components, list) or not all(isinstance(c, dict) for c in components):
        raise _bad("components must be a list of objects")
    if store.get(name, language) is not None:
        raise GraphError(
            100,
            f"Content in this language already exists: {name} ({language})",
            subcode=2388024,
        )
    data = normalise(
        {
            "name": name,
            "language": language,
            "status": "PENDING",
            "category": category,
            "parameter_format": fmt,
            "components": copy.deepcopy(components),
        }
    )
    kinds = [c.get("type") for c in data["components"]]
    if kinds.count("BODY") != 1:
        raise _bad("a template needs exactly one BODY component")
    for comp in data["components"]:
        _check_component(comp, fmt == "NAMED")
    return data


def _check_component(comp: dict[str, Any], named: bool) -> None:
    kind = comp.get("type")
    if kind not in ("HEADER", "BODY", "FOOTER", "BUTTONS"):
        raise _bad(f"unknown component type {kind!r}")
    example = comp.get("example") if isinstance(comp.get("example"), dict) else {}
    assert isinstance(example, dict)
    if kind == "BUTTONS":
        buttons = comp.get("buttons")
        if not isinstance(buttons, list) or not 1 <= len(buttons) <= 10:
            raise _bad("BUTTONS needs 1 to 10 buttons")
        for button in buttons:
            if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                raise _bad("every button needs a type and a text")
            if button.get("type") == "URL" and not isinstance(button.get("url"), str):
                raise _bad("a URL button needs a url")
        return
    if kind == "HEADER" and comp["format"] in MEDIA_FORMATS:
        if not example.get("header_handle"):
            raise _bad(f"a {comp['format']} header needs example.header_handle")
        return
    text = comp.get("text")
    if not isinstance(text, str) or not text.strip():
        raise _bad(f"{kind} needs a text")
    params = placeholders(text)
    if kind == "FOOTER" and params:
        raise _bad("a FOOTER cannot have variables")
    if kind == "HEADER" and len(params) > 1:
        raise _bad("a TEXT header has at most one variable")
    if not params:
        return
    stripped = text.strip()
    if stripped.startswith("{{") or stripped.endswith("}}"):
        raise _bad("variables can't be at the start or end of the template", subcode=2388299)
    if named:
        if not all(NAMED.match(p) for p in params):
            raise _bad("NAMED parameters are lowercase letters and underscores")
        key = "header_text_named_params" if kind == "HEADER" else "body_text_named_params"
        given = {e.get("param_name") for e in example.get(key, []) if isinstance(e, dict)}
        if not set(params) <= given:
            raise _bad(f"{kind}: example.{key} must give an example for every parameter")
        return
    if params != [str(i) for i in range(1, len(params) + 1)]:
        raise _bad(f"{kind}: positional variables must be {{{{1}}}}, {{{{2}}}}, ... in order")
    if kind == "HEADER":
        sample = example.get("header_text")
        ok = isinstance(sample, list) and len(sample) == len(params)
    else:
        sample = example.get("body_text")
        ok = isinstance(sample, list) and len(sample) == 1 and len(sample[0]) == len(params)
    if not ok:
        raise _bad(f"{kind}: the example must give one value per variable")


ADJACENT = re.compile(r"\}\}\s*\{\{")


def review(data: dict[str, Any]) -> tuple[str, str, dict[str, str] | None]:
    """The fake review's verdict: (status, reason, rejection_info)."""
    for comp in data.get("components", []):
        if ADJACENT.search(str(comp.get("text") or "")):
            return (
                "REJECTED",
                "INVALID_FORMAT",
                {
                    "reason": "Two variables are adjacent with no text between them.",
                    "recommendation": "Put words or punctuation between the variables.",
                },
            )
    return "APPROVED", "NONE", None


def status_value(
    tpl: Template,
    event: str,
    reason: str | None = "NONE",
    rejection_info: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The ``value`` of a ``message_template_status_update`` webhook (reference section 5)."""
    value: dict[str, Any] = {
        "event": event,
        "message_template_id": int(tpl.id),
        "message_template_name": tpl.name,
        "message_template_language": tpl.language,
        "reason": reason,
        "message_template_category": tpl.category,
    }
    if rejection_info is not None:
        value["rejection_info"] = rejection_info
    if event in ("PAUSED", "LOCKED", "UNPAUSED"):
        value["other_info"] = {
            "title": "FIRST_PAUSE" if event == "PAUSED" else "UNPAUSE",
            "description": "Set through the sandbox's /_fake/templates control.",
        }
    return value
