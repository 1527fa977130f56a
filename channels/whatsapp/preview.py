"""A template send as the contact sees it in WhatsApp (the protocol's ``TemplatePreview``).

The send record names a template and gives its parameters; what the contact reads is the
template's own header, body, footer and buttons (as the list API returns them) with those
parameters in place. Pure: the channel passes its loaded definitions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from channels.protocol import TemplateButton, TemplatePreview
from channels.whatsapp.templates import (
    PLACEHOLDER,
    TemplateInfo,
    button_index,
    check_template_params,
)


def fill(text: str, params: Any) -> str:
    """``text`` with its ``{{1}}`` / ``{{name}}`` placeholders replaced by ``params``."""

    def value(match: Any) -> str:
        key = match.group(1)
        if isinstance(params, Mapping):
            found = params.get(key)
        elif isinstance(params, Sequence) and key.isdigit() and 0 < int(key) <= len(params):
            found = params[int(key) - 1]
        else:
            found = None
        return str(match.group(0)) if found is None else str(found)

    return PLACEHOLDER.sub(value, text)


def _components(item: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    parts = [c for c in item.get("components") or [] if isinstance(c, dict)]
    return {str(c.get("type", "")).upper(): c for c in parts}


def preview(
    item: Mapping[str, Any] | None,
    info: TemplateInfo | None,
    block: Mapping[str, Any],
    *,
    language: str,
    languages: Sequence[str] = (),
) -> TemplatePreview:
    """``block`` (a send's template: name, language, header/body/buttons parameters) rendered
    from ``item`` (the synced definition) and ``info`` (its parsed form); either None: unknown."""
    found = check_template_params(info, block, language=language, available_languages=languages)
    problem = {"code": found.code, "message": found.message} if found else None
    name, asked = str(block.get("name")), str(block.get("language") or "")
    if item is None:
        return TemplatePreview(name, asked, known=False, problem=problem)
    parts = _components(item)
    header_text: str | None = None
    media: str | None = None
    given = list(block.get("header") or [])
    if (header := parts.get("HEADER")) is not None:
        fmt = str(header.get("format") or "TEXT").upper()
        if fmt == "TEXT":
            header_text = fill(str(header.get("text", "")), given)
        else:
            media = fmt.lower()
            header_text = str(given[0]) if given else None
    body = ""
    if "BODY" in parts:
        body = fill(str(parts["BODY"].get("text", "")), block.get("body") or [])
    footer = str(parts["FOOTER"].get("text", "")) if "FOOTER" in parts else None
    return TemplatePreview(
        name,
        asked,
        header=header_text,
        header_media=media,
        body=body,
        footer=footer,
        buttons=_buttons(info, block, parts.get("BUTTONS")),
        problem=problem,
    )


def _buttons(
    info: TemplateInfo | None, block: Mapping[str, Any], component: dict[str, Any] | None
) -> tuple[TemplateButton, ...]:
    if component is None:
        return ()
    sent = [b for b in block.get("buttons") or [] if isinstance(b, Mapping)]
    given: dict[int, Any] = {}  # template button index -> the send's parameter for it
    for position, button in enumerate(sent):
        kind, index = button_index(info, sent, position)
        if kind is not None and index is not None:
            given[index] = button[kind]
    shown: list[TemplateButton] = []
    for index, button in enumerate(component.get("buttons") or []):
        kind, text = str(button.get("type", "")).upper(), str(button.get("text", ""))
        param = given.get(index)
        if kind == "QUICK_REPLY":
            shown.append(TemplateButton("quick_reply", text, None if param is None else str(param)))
        elif kind == "URL":
            url = fill(str(button.get("url", "")), [] if param is None else [param])
            shown.append(TemplateButton("url", text, target=url))
        elif kind == "PHONE_NUMBER":
            shown.append(TemplateButton("phone", text, target=str(button.get("phone_number", ""))))
        else:
            shown.append(TemplateButton(kind.lower(), text))
    return tuple(shown)
