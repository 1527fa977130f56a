"""How messages appear in conversation test reports, and whether one matches a ``bot:`` step.

One place decides how expected and actual messages are written (YAML flow style), so the
transcripts a failing test prints line up and diff cleanly whichever side they came from.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

_INDICATORS = set("-?:,[]{}#&*!|>'\"%@` ")


def _quote(text: str) -> str:
    quoted = json.dumps(text, ensure_ascii=False)
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in quoted)


def show(value: Any) -> str:
    """A value in YAML flow style, quoting a text only when it would otherwise mislead."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {show(v)}" for k, v in value.items()) + "}"
    text = str(value)
    plain_ok = (
        text
        and text == text.strip()
        and text[0] not in _INDICATORS
        and all(c.isprintable() for c in text)
        and not any(c in text for c in ",[]{}")
        and ": " not in text
        and " #" not in text
        and not text.endswith(":")
    )
    return text if plain_ok else _quote(text)


def _view(message: dict[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    """The message's values for the keys a ``bot:`` mapping gives, named as the test names them."""
    template = message.get("template") or {}
    out: dict[str, Any] = {}
    for key in keys:
        if key == "template":
            out[key] = template.get("name")
        elif key in ("header", "body", "buttons"):
            out[key] = template.get(key, []) if template else None
        elif key == "quick_replies":
            out[key] = message.get(key) or []
        else:
            out[key] = message.get(key)
    return out


def default_view(message: dict[str, Any]) -> Any:
    """How an unexpected message is shown: its text, else its template or attachment."""
    if message.get("text") is not None:
        return message["text"]
    template = message.get("template")
    if template:
        keys = ["template", *(k for k in ("header", "body") if template.get(k))]
        return _view(message, keys)
    return {"attachment": message.get("attachment")}


def compare(expected: Any, message: dict[str, Any]) -> tuple[bool, str]:
    """Whether ``message`` matches a ``bot:`` expectation, and the message as a transcript line."""
    if isinstance(expected, str):
        text = message.get("text")
        actual = text if text is not None else default_view(message)
        return text == expected, f"bot: {show(actual)}"
    view = _view(message, expected)
    return view == expected, f"bot: {show(view)}"
