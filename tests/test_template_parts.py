"""A synced template as Studio and ``chasqui templates show`` lay it out: what its channel type
shows of it (placeholders in place), its placeholders, and the provider's reason only where it
is not approved."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bot.api.templates import describe, segments
from channels.console import ConsoleChannel
from channels.whatsapp.channel import WhatsAppChannel

ITEMS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "data" / "whatsapp" / "templates.json").read_text()
)["api_items"]


def item(name: str) -> dict[str, Any]:
    return {"channel": "wa", **next(i for i in ITEMS if i["name"] == name)}


def test_header_body_footer_buttons_and_placeholders() -> None:
    shown = describe(WhatsAppChannel, item("order_ready"))
    assert shown.preview is not None
    assert shown.preview.header == "Hola {{1}}"
    assert shown.preview.body == "Tu pedido {{1}} por {{2}} estará listo el {{3}}."
    assert shown.preview.footer == "Chasqui Demo"
    assert shown.preview.buttons and shown.preview.problem is None
    assert shown.placeholders == ["{{1}}", "{{2}}", "{{3}}"]
    assert shown.reason is None


def test_a_media_header_names_its_kind_and_placeholders_count_once() -> None:
    shown = describe(WhatsAppChannel, item("booking_reminder"))
    assert shown.preview is not None and shown.preview.header_media == "image"
    assert shown.placeholders == ["{{first_name}}", "{{slot}}"]
    assert describe(WhatsAppChannel, item("pickup_notice")).placeholders == ["{{1}}", "{{2}}"]


def test_the_reason_shows_only_when_not_approved() -> None:
    assert describe(WhatsAppChannel, item("promo_semana")).reason == "INVALID_FORMAT"
    approved = {**item("order_ready"), "rejected_reason": "NONE"}
    assert describe(WhatsAppChannel, approved).reason is None
    paused = {**item("pickup_notice"), "rejected_reason": "low quality"}
    assert describe(WhatsAppChannel, paused).reason == "low quality"


def test_a_type_without_templates_lays_nothing_out() -> None:
    shown = describe(ConsoleChannel, item("order_ready"))
    assert shown.preview is None and shown.placeholders == []


def test_an_item_the_type_cannot_read_still_shows_what_it_has() -> None:
    shown = describe(WhatsAppChannel, {"channel": "wa", "name": "x", "language": "es"})
    assert shown.preview is not None and shown.preview.body == ""


def test_segments_mark_the_placeholders() -> None:
    assert segments("Hola {{1}}, tu {{ order }}.") == [
        ("Hola ", False),
        ("{{1}}", True),
        (", tu ", False),
        ("{{ order }}", True),
        (".", False),
    ]
    assert segments("") == [] and segments("plain") == [("plain", False)]
