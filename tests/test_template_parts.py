"""A synced template as Studio and ``chasqui templates show`` lay it out: its parts, its
placeholders, and the provider's reason only where it is not approved."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bot.api.templates import Button, parts, segments

ITEMS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "data" / "whatsapp" / "templates.json").read_text()
)["api_items"]


def item(name: str) -> dict[str, Any]:
    return next(i for i in ITEMS if i["name"] == name)


def test_header_body_footer_buttons_and_placeholders() -> None:
    shown = parts(item("order_ready"))
    assert shown.header == "Hola {{1}}"
    assert shown.body == "Tu pedido {{1}} por {{2}} estará listo el {{3}}."
    assert shown.footer == "Chasqui Demo"
    assert shown.buttons and all(isinstance(b, Button) for b in shown.buttons)
    assert shown.placeholders == ["{{1}}", "{{2}}", "{{3}}"]
    assert shown.reason is None


def test_a_media_header_names_its_format_and_named_placeholders_count_once() -> None:
    shown = parts(item("booking_reminder"))
    assert shown.header == "[image]"
    assert shown.placeholders == ["{{first_name}}", "{{slot}}"]
    assert parts(item("pickup_notice")).placeholders == ["{{1}}", "{{2}}"]  # lower-case "body"


def test_the_reason_shows_only_when_not_approved() -> None:
    assert parts(item("promo_semana")).reason == "INVALID_FORMAT"
    approved = {**item("order_ready"), "rejected_reason": "NONE"}
    assert parts(approved).reason is None
    paused = {**item("pickup_notice"), "rejected_reason": "low quality"}
    assert parts(paused).reason == "low quality"


def test_segments_mark_the_placeholders() -> None:
    assert segments("Hola {{1}}, tu {{ order }}.") == [
        ("Hola ", False),
        ("{{1}}", True),
        (", tu ", False),
        ("{{ order }}", True),
        (".", False),
    ]
    assert segments("") == [] and segments("plain") == [("plain", False)]


def test_a_broken_item_still_shows_what_it_has() -> None:
    shown = parts({"name": "x", "components": ["junk", {"type": "BODY"}, {"type": "BUTTONS"}]})
    assert (shown.header, shown.body, shown.footer, shown.buttons) == (None, "", None, [])
