"""The engine's events: each stored shape decodes to its class and encodes back unchanged."""

from __future__ import annotations

from typing import Any

import pytest

from bot.engine.events import (
    Expire,
    Interrupt,
    Reply,
    SendFailed,
    Start,
    Timeout,
    Unknown,
    WebhookAnswered,
    decode,
)

# the shapes the writers have always queued (ingest, starts, fire_timers.lua, apply_status.lua)
STORED: list[tuple[dict[str, Any], type]] = [
    ({"type": "start", "flow": "survey", "params": {"order": "A1"}, "at": 10.5}, Start),
    ({"type": "start", "flow": "survey", "start": "s-1", "at": 10.5}, Start),
    (
        {
            "type": "reply",
            "text": "yes",
            "channel": "wa",
            "urn": "whatsapp:1555",
            "external_id": "wamid.1",
            "msg_type": "button",
            "payload": "YES",
            "media": {"id": "m1", "mime_type": "image/png"},
            "reply_to": "wamid.0",
            "sent_at": 9.0,
            "at": 9.0,
        },
        Reply,
    ),
    ({"type": "reply", "text": "👍", "record_only": True, "reaction": {"emoji": "👍"}}, Reply),
    ({"type": "timeout", "token": "abc123", "at": 20.0}, Timeout),
    ({"type": "expire", "token": "abc123", "at": 20.0}, Expire),
    ({"type": "interrupt", "reason": "by an operator"}, Interrupt),
    (
        {"type": "webhook", "response": {"status": 200, "json": {"ok": True}}, "at": 3.0},
        WebhookAnswered,
    ),
    (
        {"type": "fail", "run": "r1", "node": "hello", "code": "131047", "channel": "wa", "at": 4},
        SendFailed,
    ),
]


@pytest.mark.parametrize(("raw", "kind"), STORED)
def test_a_stored_event_decodes_to_its_class_and_encodes_back(
    raw: dict[str, Any], kind: type
) -> None:
    event = decode(raw)
    assert type(event) is kind
    assert event.encode() == raw


def test_fields_are_read_as_the_engine_uses_them() -> None:
    reply = decode({"type": "reply", "text": None, "sent_at": "7", "payload": "P", "at": "8"})
    assert isinstance(reply, Reply)
    assert (reply.text, reply.sent_at, reply.at) == ("", 7.0, 8.0)
    assert reply.details() == {"payload": "P", "sent_at": 7.0}
    start = decode({"type": "start", "flow": "f", "params": None})
    assert isinstance(start, Start) and start.params == {} and start.at is None
    # the Lua scripts write JSON null for a missing code
    failed = decode({"type": "fail", "run": "r", "node": "n", "code": None, "at": 1})
    assert isinstance(failed, SendFailed) and failed.code is None


def test_an_unknown_type_is_kept_as_a_no_op() -> None:
    event = decode({"type": "wave", "at": 5})
    assert event == Unknown(type="wave", at=5.0)
    assert event.encode() == {"type": "wave", "at": 5.0}


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ({"type": "start"}, KeyError),
        ({"type": "start", "flow": ["not", "a", "name"]}, TypeError),
        ({"type": "timeout", "token": 5}, TypeError),
        ({"type": "reply", "text": "x", "at": "noon"}, ValueError),
    ],
)
def test_an_event_that_cannot_be_read_raises(raw: dict[str, Any], error: type) -> None:
    with pytest.raises(error):
        decode(raw)
