"""``chasqui templates show NAME``: a synced template as Studio's template page shows it --
status, language, category, the provider's reason when it is not approved, the header, body with
its placeholders, footer and buttons -- read from the running server's API."""

from __future__ import annotations

import sys
from typing import Any
from urllib.parse import urlencode

from bot.api.templates import Parts, parts, segments
from bot.cli.flows import call
from bot.cli.starts import ApiFailed
from bot.core.config import Config


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


def _print(item: dict[str, Any], shown: Parts, tty: bool) -> None:
    print(
        f"{item['name']}  {item['language']}  {item.get('status', '?')}  "
        f"{item.get('category') or ''}  (channel {item['channel']})".replace("    ", "  ")
    )
    if shown.reason:
        print(f"  why: {shown.reason}")
    if shown.header:
        print(f"  header:  {_marked(shown.header, tty)}")
    print(f"  body:    {_marked(shown.body, tty)}")
    if shown.footer:
        print(f"  footer:  {shown.footer}")
    for button in shown.buttons:
        target = f" -> {_marked(button.target, tty)}" if button.target else ""
        print(f"  button:  [{button.text}] {button.type.lower()}{target}")
    if shown.placeholders:
        print(f"  placeholders: {', '.join(shown.placeholders)}")


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
        _print(item, parts(item), tty)
    return 0
