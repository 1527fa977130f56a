"""Template messages as the contact sees them, for ``chasqui simulate``.

A send record names a template and its parameters; what the contact reads is the template's own
text with those parameters in it. Given the templates as the provider lists them (the channel's
synced ones, else the WhatsApp sandbox's seed), :class:`TemplateBook` renders the header, body,
footer and buttons, and says why the provider would refuse a send (the same check the WhatsApp
channel makes before calling Meta). A template it does not know is shown by name and parameters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from channels.whatsapp.inbound import normalise_language
from channels.whatsapp.templates import (
    TemplateParseError,
    button_index,
    check_template_params,
    parse_template,
)

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")

Choice = tuple[str, str | None]  # what the contact taps: its text, and the payload it carries


def _fill(text: str, params: Any) -> str:
    """``text`` with its ``{{1}}`` / ``{{name}}`` placeholders replaced by ``params``."""

    def value(match: re.Match[str]) -> str:
        key = match.group(1)
        if isinstance(params, Mapping):
            found = params.get(key)
        elif key.isdigit() and 0 < int(key) <= len(params):
            found = params[int(key) - 1]
        else:
            found = None
        return match.group(0) if found is None else str(found)

    return PLACEHOLDER.sub(value, text)


def _components(item: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    parts = [c for c in item.get("components") or [] if isinstance(c, dict)]
    return {str(c.get("type", "")).upper(): c for c in parts}


def plain(block: Mapping[str, Any]) -> str:
    """A template the simulator does not know: its name, language and parameters."""
    body = block.get("body") or []
    if isinstance(body, Mapping):
        params = ", ".join(f"{k}={v}" for k, v in body.items())
    else:
        params = ", ".join(str(v) for v in body)
    header = block.get("header") or []
    if header:
        params = f"header: {', '.join(map(str, header))}; {params}"
    return f"[template {block.get('name')} ({block.get('language')}): {params}]"


class TemplateBook:
    """The templates a channel knows, by (name, language)."""

    def __init__(self, items: Iterable[dict[str, Any]]) -> None:
        self.items: dict[tuple[str, str], dict[str, Any]] = {}
        for item in items:
            key = (str(item.get("name")), normalise_language(str(item.get("language"))) or "")
            self.items[key] = item

    def find(self, block: Mapping[str, Any]) -> dict[str, Any] | None:
        language = normalise_language(str(block.get("language") or "")) or ""
        return self.items.get((str(block.get("name")), language))

    def problem(self, block: Mapping[str, Any]) -> dict[str, str] | None:
        """Why the provider would refuse this send (``{"code", "message"}``), or None."""
        item = self.find(block)
        try:
            info = parse_template(item) if item is not None else None
        except TemplateParseError:
            info = None
        language = normalise_language(str(block.get("language") or "")) or ""
        others = [lang for name, lang in self.items if name == block.get("name")]
        found = check_template_params(info, block, language=language, available_languages=others)
        return {"code": found.code, "message": found.message} if found else None

    def render(self, block: Mapping[str, Any]) -> tuple[list[str], list[Choice]]:
        """The lines the contact reads and the quick-reply buttons they can tap."""
        item = self.find(block)
        if item is None:
            return [plain(block)], []
        parts = _components(item)
        lines = [f"[template {block.get('name')} ({block.get('language')})]"]
        header = parts.get("HEADER")
        given = list(block.get("header") or [])
        if header is not None:
            fmt = str(header.get("format") or "TEXT").upper()
            if fmt == "TEXT":
                lines.append(f"*{_fill(str(header.get('text', '')), given)}*")
            else:
                lines.append(f"[{fmt.lower()} {given[0] if given else '(missing)'}]")
        if "BODY" in parts:
            lines.append(_fill(str(parts["BODY"].get("text", "")), block.get("body") or []))
        if "FOOTER" in parts:
            lines.append(f"_{parts['FOOTER'].get('text', '')}_")
        buttons, choices = self._buttons(item, block, parts.get("BUTTONS"))
        return lines + buttons, choices

    def _buttons(
        self, item: dict[str, Any], block: Mapping[str, Any], component: dict[str, Any] | None
    ) -> tuple[list[str], list[Choice]]:
        if component is None:
            return [], []
        sent = [b for b in block.get("buttons") or [] if isinstance(b, Mapping)]
        try:
            info = parse_template(item)
        except TemplateParseError:
            info = None
        given: dict[int, Any] = {}  # template button index -> the send's parameter for it
        for position, button in enumerate(sent):
            kind, index = button_index(info, sent, position)
            if kind is not None and index is not None:
                given[index] = button[kind]
        lines: list[str] = []
        choices: list[Choice] = []
        for index, button in enumerate(component.get("buttons") or []):
            kind, text = str(button.get("type", "")).upper(), str(button.get("text", ""))
            if kind == "QUICK_REPLY":
                payload = given.get(index)
                choices.append((text, None if payload is None else str(payload)))
            elif kind == "URL":
                suffix = given.get(index)
                url = _fill(str(button.get("url", "")), [] if suffix is None else [suffix])
                lines.append(f"[link {text}: {url}]")
            elif kind == "PHONE_NUMBER":
                lines.append(f"[call {text}: {button.get('phone_number', '')}]")
            else:
                lines.append(f"[{kind.lower()} button {text}]")
        return lines, choices
