"""Template messages as the contact sees them, for ``chasqui simulate``.

A send record names a template and its parameters; the channel previews it
(``Channel.preview_template``: the template's own header, body, footer and buttons with the
parameters in place, and why the provider would refuse it). This module writes that preview as
lines of text and the choices the contact can tap. A template the channel does not know is shown
by name and parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from channels.protocol import TemplatePreview

Choice = tuple[str, str | None]  # what the contact taps: its text, and the payload it carries


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


def render(preview: TemplatePreview, block: Mapping[str, Any]) -> tuple[list[str], list[Choice]]:
    """The lines the contact reads and the quick-reply buttons they can tap."""
    if not preview.known:
        return [plain(block)], []
    lines = [f"[template {preview.name} ({preview.language})]"]
    if preview.header_media:
        lines.append(f"[{preview.header_media} {preview.header or '(missing)'}]")
    elif preview.header is not None:
        lines.append(f"*{preview.header}*")
    if preview.body:
        lines.append(preview.body)
    if preview.footer is not None:
        lines.append(f"_{preview.footer}_")
    choices: list[Choice] = []
    for button in preview.buttons:
        if button.kind == "quick_reply":
            choices.append((button.text, button.payload))
        elif button.kind == "url":
            lines.append(f"[link {button.text}: {button.target}]")
        elif button.kind == "phone":
            lines.append(f"[call {button.text}: {button.target}]")
        else:
            lines.append(f"[{button.kind} button {button.text}]")
    return lines, choices
