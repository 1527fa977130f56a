"""The pure half of the Telegram channel: updates read, calls built, answers classified."""

from __future__ import annotations

from typing import Any

import pytest

from channels.telegram.errors import classify
from channels.telegram.outbound import OutboundError, build_call, callback_data, keyboard, media
from channels.telegram.updates import BadUpdate, ButtonTap, parse_update

CHAT = 6102938475


@pytest.mark.parametrize(
    ("status", "body", "code", "retry_after"),
    [
        (
            403,
            {"error_code": 403, "description": "Forbidden: bot was blocked by the user"},
            "contact_unreachable",
            None,
        ),
        (
            403,
            {
                "error_code": 403,
                "description": "Forbidden: bot can't initiate conversation with a user",
            },
            "contact_unreachable",
            None,
        ),
        (
            400,
            {"error_code": 400, "description": "Bad Request: chat not found"},
            "contact_unreachable",
            None,
        ),
        (
            400,
            {
                "error_code": 400,
                "description": "Bad Request: wrong file identifier/HTTP URL specified",
            },
            "media_invalid",
            None,
        ),
        (
            400,
            {"error_code": 400, "description": "Bad Request: message text is empty"},
            "invalid_request",
            None,
        ),
        (
            429,
            {
                "error_code": 429,
                "description": "Too Many Requests: retry after 7",
                "parameters": {"retry_after": 7},
            },
            "rate_limited",
            7.0,
        ),
        (429, None, "rate_limited", 5.0),
        (401, {"error_code": 401, "description": "Unauthorized"}, "bot_token_invalid", 300.0),
        (500, None, "telegram_unavailable", 8.0),
        (409, {"error_code": 409, "description": "Conflict"}, "telegram_409", None),
    ],
)
def test_answers_are_classified(
    status: int, body: Any, code: str, retry_after: float | None
) -> None:
    result = classify(status, body, attempt=2)
    assert not result.ok and result.error is not None
    assert result.error["code"] == code and result.error["message"]
    assert result.retry_after == retry_after


def test_a_text_with_quick_replies() -> None:
    call = build_call(
        {
            "urn": f"telegram:{CHAT}",
            "text": "¿Y?",
            "quick_replies": ["Sí", "No"],
            "reply_to": f"{CHAT}:9",
        }
    )
    assert call.method == "sendMessage" and call.chat_id == CHAT
    assert call.body == {
        "chat_id": CHAT,
        "text": "¿Y?",
        "reply_markup": {
            "inline_keyboard": [
                [{"text": "Sí", "callback_data": "Sí"}, {"text": "No", "callback_data": "No"}]
            ]
        },
        "reply_parameters": {"message_id": 9, "allow_sending_without_reply": True},
    }
    # a quote of another chat's message is not sent
    other = build_call({"urn": f"telegram:{CHAT}", "text": "x", "reply_to": "77:9"})
    assert "reply_parameters" not in other.body


@pytest.mark.parametrize(
    ("attachment", "kind", "source"),
    [
        ("https://x.example/a/photo.JPG", "photo", "https://x.example/a/photo.JPG"),
        ("https://x.example/boleta.pdf", "document", "https://x.example/boleta.pdf"),
        ("image/png:https://x.example/render?id=3", "photo", "https://x.example/render?id=3"),
        ("video:https://x.example/v", "video", "https://x.example/v"),
        ("application/pdf:https://x.example/f", "document", "https://x.example/f"),
        ("document:BQACAgEAAxkBAAIBRGdoc", "document", "BQACAgEAAxkBAAIBRGdoc"),
        ("image/gif:https://x.example/a.gif", "document", "https://x.example/a.gif"),
    ],
)
def test_attachments_pick_the_method(attachment: str, kind: str, source: str) -> None:
    assert media(attachment) == (kind, source)


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ({"urn": "whatsapp:+5511987654321", "text": "x"}, "invalid_urn"),
        ({"urn": "telegram:-1001", "text": "x"}, "invalid_urn"),
        ({"urn": f"telegram:{CHAT}", "text": "x" * 4097}, "text_too_long"),
        (
            {"urn": f"telegram:{CHAT}", "text": "x" * 1025, "attachment": "https://x/a.jpg"},
            "caption_too_long",
        ),
        ({"urn": f"telegram:{CHAT}", "template": {"name": "t"}}, "templates_unsupported"),
        ({"urn": f"telegram:{CHAT}", "text": " "}, "empty_message"),
        ({"urn": f"telegram:{CHAT}", "attachment": "not a url"}, "attachment_invalid"),
    ],
)
def test_what_telegram_would_refuse_is_refused_here(message: dict[str, Any], code: str) -> None:
    with pytest.raises(OutboundError) as caught:
        build_call(message)
    assert caught.value.code == code


def test_buttons_are_laid_out_and_their_data_fits() -> None:
    rows = keyboard(["1", "2", "3", "4", "5"])
    assert [[b["text"] for b in row] for row in rows] == [["1", "2", "3"], ["4", "5"]]
    long = "ñ" * 40  # 80 bytes
    assert callback_data(long) == "ñ" * 32
    assert callback_data("a" * 63 + "ñ") == "a" * 63  # never half a character


def test_a_tap_reads_its_title_from_the_keyboard() -> None:
    keyboard_ = {"inline_keyboard": [[{"text": "Sí, recibido ✅", "callback_data": "yes"}]]}
    update = {
        "update_id": 5,
        "callback_query": {
            "id": "q1",
            "from": {"id": CHAT, "first_name": "Ana", "last_name": "Q"},
            "message": {
                "message_id": 3,
                "chat": {"id": CHAT, "type": "private"},
                "reply_markup": keyboard_,
            },
            "data": "yes",
        },
    }
    parsed = parse_update(update, "tg", 100.0)
    tap = parsed.message
    assert isinstance(tap, ButtonTap)
    assert (tap.text, tap.payload, tap.callback_id) == ("Sí, recibido ✅", "yes", "q1")
    assert (tap.urn, tap.external_id, tap.reply_to, tap.timestamp) == (
        f"telegram:{CHAT}",
        "5",
        f"{CHAT}:3",
        100.0,
    )
    assert tap.contact_name == "Ana Q"
    # an old message Telegram no longer sends: the data stands in for the title
    del update["callback_query"]["message"]
    assert parse_update(update, "tg", 100.0).message.text == "yes"  # type: ignore[union-attr]


def test_group_chats_and_other_updates_are_skipped() -> None:
    group = {
        "update_id": 1,
        "message": {
            "message_id": 1,
            "date": 1,
            "chat": {"id": -100123, "type": "supergroup"},
            "text": "hola",
        },
    }
    assert parse_update(group, "tg", 0).skipped
    assert parse_update({"update_id": 2, "poll": {}}, "tg", 0).skipped
    poll = {
        "update_id": 3,
        "message": {
            "message_id": 1,
            "date": 1,
            "chat": {"id": CHAT, "type": "private"},
            "poll": {},
        },
    }
    assert parse_update(poll, "tg", 0).skipped
    for junk in ([], {"update_id": True}, {"update_id": 4, "message": {"chat": {}}}):
        with pytest.raises(BadUpdate):
            parse_update(junk, "tg", 0)


def test_a_message_without_a_date_is_stamped_when_received() -> None:
    update = {"update_id": 9, "message": {"message_id": 1, "chat": {"id": CHAT}, "text": "hola"}}
    message = parse_update(update, "tg", 1767855600.0).message
    assert message is not None and message.timestamp == 1767855600.0
