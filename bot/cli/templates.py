"""``chasqui templates show NAME``: a synced template as Studio's template page shows it --
status, language, category, the provider's reason when it is not approved, the header, body with
its placeholders, footer and buttons -- read from the running server's API."""

from __future__ import annotations

import sys
from typing import Any
from urllib.parse import urlencode

from bot.api.templates import Shown, describe, segments
from bot.cli.client import ApiFailed, call
from bot.core.config import Config
from channels.protocol import Channel, channel_class


def _marked(text: str, tty: bool) -> str:
    """``text`` with its placeholders in bold on a terminal."""
    if not tty:
        return text
    return "".join(
        f"\033[1m{p}\033[0m" if is_placeholder else p for p, is_placeholder in segments(text)
    )


def _all(config: Config, **query: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {**query, "limit": "200", **({"cursor": cursor} if cursor else {})}
        page = call(config, "GET", f"/api/v1/templates?{urlencode(params)}")
        found += page["templates"]
        cursor = page.get("next")
        if not cursor:
            return found


def _print(shown: Shown, tty: bool) -> None:
    item, preview = shown.item, shown.preview
    print(
        "  ".join(
            str(v)
            for v in (item["name"], item["language"], item.get("status", "?"), item.get("category"))
            if v
        )
        + f"  (channel {item['channel']})"
    )
    if shown.reason:
        print(f"  why: {shown.reason}")
    if preview is None:
        print("  (this channel's type does not lay templates out)")
        return
    if preview.header_media:
        print(f"  header:  [{preview.header_media}]")
    elif preview.header:
        print(f"  header:  {_marked(preview.header, tty)}")
    print(f"  body:    {_marked(preview.body, tty)}")
    if preview.footer:
        print(f"  footer:  {preview.footer}")
    for button in preview.buttons:
        target = f" -> {_marked(button.target, tty)}" if button.target else ""
        print(f"  button:  [{button.text}] {button.kind}{target}")
    if shown.placeholders:
        print(f"  placeholders: {', '.join(shown.placeholders)}")


def _channel_type(config: Config, channel: str) -> type[Channel] | None:
    found = config.channels.get(channel)
    try:
        return channel_class(found.type) if found is not None else None
    except ValueError:
        return None


def show(config: Config, name: str) -> int:
    try:
        found = _all(config, name=name)
        if not found:
            names = sorted({t["name"] for t in _all(config)})
            if not names:
                print(
                    "error: no templates synced yet: chasqui templates sync (or Studio's "
                    "Templates page) fetches them from the provider",
                    file=sys.stderr,
                )
            else:
                print(
                    f"error: no synced template is named {name!r}; the synced ones: "
                    f"{', '.join(names)}",
                    file=sys.stderr,
                )
            return 1
    except ApiFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    tty = sys.stdout.isatty()
    for i, item in enumerate(found):
        if i:
            print()
        kind = _channel_type(config, item["channel"])
        _print(describe(kind, item) if kind else Shown(item, None, None), tty)
    return 0
