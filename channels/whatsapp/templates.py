"""Message templates: read the list API's definitions, and check a send's parameters against one.

``check_template_params`` runs before every template send (a problem means no API call) and in
``chasqui check``; its codes are stable:

- ``template_not_found``: no template with that name in that exact language (``details`` lists
  the languages that do exist);
- ``template_paused`` (status ``PAUSED``, Meta's 132015) or ``template_not_approved`` (any other
  status but ``APPROVED``; ``details.status``);
- ``template_named_params_expected`` / ``template_positional_params_expected``: body given as a
  list to a ``NAMED`` template, or as a mapping to a ``POSITIONAL`` one;
- ``template_header_media_missing``: the template has an IMAGE/VIDEO/GIF/DOCUMENT/LOCATION header
  and the send gives no value for it (Meta: 132012);
- ``template_params_mismatch``: a component's parameter count (or names) differs from its
  placeholders (Meta: 132000); ``details`` has ``component``, ``expected``, ``got``;
- ``template_param_empty``: a header or body text parameter rendered to "" (Meta: 100);
- ``template_button_mismatch``: a button parameter points at no button of that kind, or a
  dynamic URL button gets no parameter.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from channels.whatsapp.inbound import normalise_language

ParameterFormat = Literal["POSITIONAL", "NAMED"]
MEDIA_HEADERS = frozenset({"IMAGE", "VIDEO", "GIF", "DOCUMENT"})
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
BUTTON_KINDS = {"quick_reply": "QUICK_REPLY", "url": "URL"}  # record key → template button type


class TemplateParseError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Placeholders:
    count: int = 0  # parameters to send (distinct placeholders, or 1 for a media header)
    names: tuple[str, ...] = ()  # NAMED: the names, in order of first appearance


@dataclass(frozen=True, slots=True)
class HeaderInfo:
    format: str  # TEXT, IMAGE, VIDEO, GIF, DOCUMENT, LOCATION
    params: Placeholders = field(default_factory=Placeholders)

    @property
    def media(self) -> bool:
        return self.format in MEDIA_HEADERS or self.format == "LOCATION"


@dataclass(frozen=True, slots=True)
class ButtonInfo:
    index: int
    type: str  # QUICK_REPLY, URL, PHONE_NUMBER, COPY_CODE, FLOW, ...
    text: str | None = None
    url: str | None = None
    takes_param: bool = False  # a dynamic URL ({{1}} suffix) or a copy code needs one

    @property
    def accepts(self) -> str | None:
        """The record key that may give this button a parameter (``quick_reply``/``url``)."""
        if self.type == "QUICK_REPLY":
            return "quick_reply"
        if self.type == "URL" and self.takes_param:
            return "url"
        return None


@dataclass(frozen=True, slots=True)
class TemplateInfo:
    name: str
    language: str
    status: str
    category: str | None = None
    id: str | None = None
    parameter_format: ParameterFormat = "POSITIONAL"
    header: HeaderInfo | None = None
    body: Placeholders = field(default_factory=Placeholders)
    buttons: tuple[ButtonInfo, ...] = ()
    rejected_reason: str | None = None
    sub_category: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return self.name, self.language


@dataclass(frozen=True, slots=True)
class TemplateProblem:
    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


def placeholders(text: str | None) -> list[str]:
    """Distinct placeholder names of a template text, in order of first appearance."""
    seen: list[str] = []
    for match in PLACEHOLDER.finditer(text or ""):
        if match.group(1) not in seen:
            seen.append(match.group(1))
    return seen


def _placeholders(text: Any, fmt: ParameterFormat) -> Placeholders:
    names = placeholders(text if isinstance(text, str) else None)
    if fmt == "NAMED":
        return Placeholders(len(names), tuple(names))
    return Placeholders(len(names))


def _s(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    return str(value) if isinstance(value, str | int) else None


def parse_template(api_item: Mapping[str, Any]) -> TemplateInfo:
    """One item of ``GET /{waba_id}/message_templates`` (letter case of types is tolerated)."""
    if not isinstance(api_item, Mapping):
        raise TemplateParseError("template is not an object")
    name, language = _s(api_item.get("name")), _s(api_item.get("language"))
    if not name or not language:
        raise TemplateParseError("template without name or language")
    components = api_item.get("components") or []
    if not isinstance(components, list):
        raise TemplateParseError(f"template {name}: components is not a list")
    texts = " ".join(
        str(c.get("text", "")) for c in components if isinstance(c, Mapping) and c.get("text")
    )
    fmt_raw = _s(api_item.get("parameter_format"))
    fmt: ParameterFormat
    if fmt_raw:
        fmt = "NAMED" if fmt_raw.upper() == "NAMED" else "POSITIONAL"
    else:  # absent: positional by default, unless every placeholder is a name
        names = placeholders(texts)
        fmt = "NAMED" if names and not any(n.isdigit() for n in names) else "POSITIONAL"
    header: HeaderInfo | None = None
    body = Placeholders()
    buttons: list[ButtonInfo] = []
    for comp in components:
        if not isinstance(comp, Mapping):
            continue
        ctype = str(comp.get("type", "")).upper()
        if ctype == "HEADER":
            hfmt = str(comp.get("format") or "TEXT").upper()
            params = _placeholders(comp.get("text"), fmt) if hfmt == "TEXT" else Placeholders(1)
            header = HeaderInfo(hfmt, params)
        elif ctype == "BODY":
            body = _placeholders(comp.get("text"), fmt)
        elif ctype == "BUTTONS":
            for i, b in enumerate(comp.get("buttons") or []):
                if not isinstance(b, Mapping):
                    continue
                btype = str(b.get("type", "")).upper()
                url = _s(b.get("url"))
                takes = (btype == "URL" and bool(url and PLACEHOLDER.search(url))) or (
                    btype == "COPY_CODE"
                )
                buttons.append(ButtonInfo(i, btype, _s(b.get("text")), url, takes))
    return TemplateInfo(
        name=name,
        language=language,
        status=str(api_item.get("status") or "UNKNOWN").upper(),
        category=_s(api_item.get("category")),
        id=_s(api_item.get("id")),
        parameter_format=fmt,
        header=header,
        body=body,
        buttons=tuple(buttons),
        rejected_reason=_s(api_item.get("rejected_reason")),
        sub_category=_s(api_item.get("sub_category")),
    )


@dataclass(slots=True)
class TemplatePage:
    templates: list[TemplateInfo] = field(default_factory=list)
    next_after: str | None = None  # cursor for the next page; None on the last page
    skipped: list[str] = field(default_factory=list)


def parse_template_page(body: Mapping[str, Any]) -> TemplatePage:
    """A page of the list API; follow ``next_after`` until it is None (no ``paging.next``)."""
    page = TemplatePage()
    data = body.get("data") if isinstance(body, Mapping) else None
    if not isinstance(data, list):
        page.skipped.append("data: missing or not a list")
        return page
    for i, item in enumerate(data):
        try:
            page.templates.append(parse_template(item))
        except TemplateParseError as exc:
            page.skipped.append(f"data[{i}]: {exc}")
    paging = body.get("paging")
    if isinstance(paging, Mapping) and paging.get("next"):
        cursors = paging.get("cursors")
        if isinstance(cursors, Mapping):
            page.next_after = _s(cursors.get("after"))
    return page


# ---------------------------------------------------------------- checks


def button_index(
    info: TemplateInfo | None, buttons: Sequence[Mapping[str, Any]], position: int
) -> tuple[str | None, int | None]:
    """``(sub_type, index)`` for ``buttons[position]`` of a send record.

    The index is the button's explicit ``index`` key when given; else, with the template known,
    the position of the n-th template button of that kind that accepts a parameter (n-th among
    the record's buttons of the same kind); else the button's position in the record.
    """
    button = buttons[position]
    kinds = [k for k in BUTTON_KINDS if k in button]
    if len(kinds) != 1:
        return None, None
    kind = kinds[0]
    explicit = button.get("index")
    if explicit is not None:
        text = str(explicit).strip()
        return kind, int(text) if text.isdigit() else None
    if info is None:
        return kind, position
    nth = sum(1 for b in buttons[:position] if kind in b and b.get("index") is None)
    slots = [b.index for b in info.buttons if b.accepts == kind]
    return kind, slots[nth] if nth < len(slots) else None


def check_template_params(
    info: TemplateInfo | None,
    template_block: Mapping[str, Any],
    *,
    language: str,
    available_languages: Sequence[str] = (),
) -> TemplateProblem | None:
    """The first problem that would make Meta refuse this template send, or None.

    ``info`` is the cached definition for (name, ``language``), None when there is none;
    ``available_languages`` are the languages the name exists in (for the message).
    """
    name = str(template_block.get("name", ""))
    lang = normalise_language(language) or ""
    if info is None or info.name != name or normalise_language(info.language) != lang:
        others = sorted(set(available_languages) - {lang})
        hint = f"; it exists in {', '.join(others)}" if others else ""
        return TemplateProblem(
            "template_not_found",
            f"template {name!r} has no {lang!r} translation{hint}",
            {"name": name, "language": lang, "available_languages": others},
        )
    if info.status != "APPROVED":
        code = "template_paused" if info.status == "PAUSED" else "template_not_approved"
        return TemplateProblem(
            code,
            f"template {name!r} ({lang}) is {info.status}, only APPROVED templates can be sent",
            {"name": name, "language": lang, "status": info.status},
        )
    body = template_block.get("body") or []
    if info.parameter_format == "NAMED" and isinstance(body, list) and body:
        return TemplateProblem(
            "template_named_params_expected",
            f"template {name!r} uses named parameters; give body as a mapping",
            {"component": "body", "expected": list(info.body.names)},
        )
    if info.parameter_format == "POSITIONAL" and isinstance(body, Mapping) and body:
        return TemplateProblem(
            "template_positional_params_expected",
            f"template {name!r} uses positional parameters; give body as a list",
            {"component": "body", "expected": info.body.count},
        )
    header = list(template_block.get("header") or [])
    problem = _check_header(info, header)
    if problem:
        return problem
    if info.parameter_format == "NAMED":
        expected, got = sorted(info.body.names), sorted(str(k) for k in body)
        if expected != got:
            return _mismatch(name, "body", expected, got)
    elif len(body) != info.body.count:
        return _mismatch(name, "body", info.body.count, len(body))
    problem = _check_empty(info, header, body)
    if problem:
        return problem
    return _check_buttons(info, list(template_block.get("buttons") or []))


def _check_empty(info: TemplateInfo, header: list[Any], body: Any) -> TemplateProblem | None:
    """Meta refuses a text parameter with no text (error 100). Found before sending, this
    names the parameter -- usually a contact field the flow expected and the contact lacks."""
    texts: list[tuple[str, Any, Any]] = []
    if info.header is not None and not info.header.media:
        texts += [("header", i, value) for i, value in enumerate(header, start=1)]
    pairs = body.items() if isinstance(body, Mapping) else enumerate(body, start=1)
    texts += [("body", key, value) for key, value in pairs]
    for component, key, value in texts:
        if value == "":
            return TemplateProblem(
                "template_param_empty",
                f"template {info.name!r} {component} parameter {key} is empty: WhatsApp refuses "
                "empty text parameters",
                {"component": component, "parameter": key},
            )
    return None


def _mismatch(name: str, component: str, expected: Any, got: Any) -> TemplateProblem:
    return TemplateProblem(
        "template_params_mismatch",
        f"template {name!r} {component}: expected {expected} parameter(s), got {got}",
        {"component": component, "expected": expected, "got": got},
    )


def _check_header(info: TemplateInfo, header: list[Any]) -> TemplateProblem | None:
    h = info.header
    if h is None:
        return _mismatch(info.name, "header", 0, len(header)) if header else None
    if h.media:
        if not header or not str(header[0]).strip():
            return TemplateProblem(
                "template_header_media_missing",
                f"template {info.name!r} has a {h.format} header: it must be sent every time",
                {"component": "header", "format": h.format},
            )
        return _mismatch(info.name, "header", 1, len(header)) if len(header) != 1 else None
    if len(header) != h.params.count:
        return _mismatch(info.name, "header", h.params.count, len(header))
    return None


def _check_buttons(info: TemplateInfo, buttons: list[Any]) -> TemplateProblem | None:
    used: set[int] = set()
    for i, button in enumerate(buttons):
        if not isinstance(button, Mapping):
            return _button_problem(info, i, "not a mapping")
        kind, index = button_index(info, buttons, i)
        if kind is None:
            return _button_problem(info, i, "needs exactly one of quick_reply, url")
        target = next((b for b in info.buttons if b.index == index), None)
        if target is None or target.accepts != kind:
            what = f"button {index}" if index is not None else "no button"
            return _button_problem(info, i, f"{what} of the template takes no {kind} parameter")
        used.add(target.index)
    for b in info.buttons:
        if b.takes_param and b.index not in used:
            return _button_problem(
                info, None, f"button {b.index} ({b.type}) needs a parameter", index=b.index
            )
    return None


def _button_problem(
    info: TemplateInfo, position: int | None, why: str, index: int | None = None
) -> TemplateProblem:
    details: dict[str, Any] = {
        "component": "buttons",
        "expected": [
            {"index": b.index, "type": b.type, "takes_param": b.takes_param} for b in info.buttons
        ],
    }
    if position is not None:
        details["position"] = position
    if index is not None:
        details["index"] = index
    where = f"buttons[{position}]: " if position is not None else ""
    return TemplateProblem("template_button_mismatch", f"{info.name!r} {where}{why}", details)
