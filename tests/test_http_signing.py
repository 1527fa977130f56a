"""The HTTP channel's pure parts: the Standard Webhooks signature both ways, the inbound JSON,
the outbound body, what a receiver's answer means, and the settings."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.core.config import ChannelConfig
from bot.core.contacts import UrnError, normalize_urn
from channels.http.outcomes import answered, delay
from channels.http.payloads import EXT_PATH, PayloadError, Unsendable, outgoing, parse_incoming
from channels.http.signing import SignatureError, secret_key, sign, signature, verify
from channels.protocol import ConfigError, validate_channels
from tests.support.receiver import KEY, SECRET
from tests.support.receiver import signature as their_signature

# the reference's test vector (shared/reference/whatsapp-cloud-api.md, section 11)
VECTOR_SECRET = "whsec_Y2hhc3F1aS1nZW5lcmljLWNoYW5uZWwta2V5LTAwMDE="
VECTOR_BODY = b'{"type":"message.received","data":{"contact_id":"ext-ana-01","text":"Hola"}}'
VECTOR_SIGNATURE = "v1,wQD60SKyVOuar5dcHBUOGtt337gPJ8AGqJa49xoKGys="
NOW = 1767855600


def headers(webhook_id: str = "msg_1", stamp: int = NOW, body: bytes = b"{}") -> dict[str, str]:
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": their_signature(webhook_id, stamp, body),
    }


def test_the_reference_test_vector() -> None:
    key = secret_key(VECTOR_SECRET)
    assert key == b"chasqui-generic-channel-key-0001"
    assert signature(key, "msg_TEST_0001", 1767855600, VECTOR_BODY) == VECTOR_SIGNATURE
    sent = {
        "webhook-id": "msg_TEST_0001",
        "webhook-timestamp": "1767855600",
        "webhook-signature": VECTOR_SIGNATURE,
    }
    assert verify(key, sent, VECTOR_BODY, NOW + 299) == ("msg_TEST_0001", 1767855600)
    assert sign(key, "msg_TEST_0001", VECTOR_BODY, 1767855600.7) == sent


def test_any_v1_entry_may_match_during_a_key_rotation() -> None:
    good = headers()["webhook-signature"]
    old = their_signature("msg_1", NOW, b"{}", key=b"o" * 32)
    for listed in (f"{old} {good}", f"v2,{good[3:]} {good}", f"  {good}  "):
        assert verify(KEY, {**headers(), "webhook-signature": listed}, b"{}", NOW)[0] == "msg_1"
    for listed in (old, f"v2,{good[3:]}", good[3:], f"v1,{good[3:].lower()}"):
        with pytest.raises(SignatureError) as refused:
            verify(KEY, {**headers(), "webhook-signature": listed}, b"{}", NOW)
        assert refused.value.code == "bad_signature"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"webhook-id": None}, "missing_webhook_id"),
        ({"webhook-timestamp": None}, "missing_webhook_timestamp"),
        ({"webhook-signature": None}, "missing_webhook_signature"),
        ({"webhook-signature": " "}, "missing_webhook_signature"),
        ({"webhook-id": "has space"}, "invalid_webhook_id"),
        ({"webhook-timestamp": "1767855600.5"}, "invalid_webhook_timestamp"),
        ({"webhook-timestamp": "-5"}, "invalid_webhook_timestamp"),
    ],
)
def test_a_missing_or_malformed_header_is_named(change: dict[str, str | None], code: str) -> None:
    sent = {k: v for k, v in {**headers(), **change}.items() if v is not None}
    with pytest.raises(SignatureError) as refused:
        verify(KEY, sent, b"{}", NOW)
    assert refused.value.code == code


def test_timestamps_more_than_five_minutes_away_are_refused() -> None:
    for stamp, code in ((NOW - 301, "stale_timestamp"), (NOW + 301, "future_timestamp")):
        with pytest.raises(SignatureError) as refused:
            verify(KEY, headers(stamp=stamp), b"{}", NOW)
        assert refused.value.code == code
    for stamp in (NOW - 300, NOW + 300):  # five minutes exactly still pass
        assert verify(KEY, headers(stamp=stamp), b"{}", NOW) == ("msg_1", stamp)


header_text = st.one_of(st.none(), st.text(max_size=80), st.sampled_from(["v1,", "v1,a=", "0"]))


@given(
    webhook_id=header_text,
    stamp=header_text,
    sig=header_text,
    body=st.binary(max_size=64),
)
def test_the_verifier_refuses_junk_with_a_signature_error_only(
    webhook_id: str | None, stamp: str | None, sig: str | None, body: bytes
) -> None:
    sent = {
        k: v
        for k, v in {
            "webhook-id": webhook_id,
            "webhook-timestamp": stamp,
            "webhook-signature": sig,
        }.items()
        if v is not None
    }
    try:
        verify(KEY, sent, body, NOW)
    except SignatureError as exc:
        assert exc.code and exc.message
    else:  # a forged signature cannot pass by chance
        raise AssertionError(f"accepted {sent!r}")


@given(
    webhook_id=st.from_regex(r"[\x21-\x7e]{1,40}", fullmatch=True),
    body=st.binary(max_size=200),
    skew=st.integers(-300, 300),
    flip=st.integers(0, 199),
)
def test_signed_means_verified_and_any_changed_byte_is_refused(
    webhook_id: str, body: bytes, skew: int, flip: int
) -> None:
    sent = sign(KEY, webhook_id, body, NOW + skew)
    assert sent["webhook-signature"] == their_signature(webhook_id, NOW + skew, body)
    assert verify(KEY, sent, body, NOW) == (webhook_id, NOW + skew)
    if body:
        i = flip % len(body)
        tampered = body[:i] + bytes([body[i] ^ 1]) + body[i + 1 :]
        with pytest.raises(SignatureError, match="no v1 entry"):
            verify(KEY, sent, tampered, NOW)


# -- the inbound JSON ----------------------------------------------------------------------------
def test_a_message_in() -> None:
    raw = json.dumps({"id": "m1", "from": "crm-42", "text": "Hola", "name": "Ana", "x": 1})
    message = parse_incoming(raw.encode())
    assert (message.id, message.urn, message.text, message.name) == (
        "m1",
        "ext:crm-42",
        "Hola",
        "Ana",
    )
    assert parse_incoming(b'{"id": "m", "from": "a@b.pe", "text": "x", "name": null}').name == ""


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"", "invalid_json"),
        (b"{", "invalid_json"),
        (b"\xff", "invalid_json"),
        (b'{"id": NaN}', "invalid_json"),
        (b"[" * 5000, "invalid_json"),
        (b"[]", "invalid_body"),
        (b'"hi"', "invalid_body"),
        (b'{"from": "a", "text": "x"}', "missing_id"),
        (b'{"id": "m", "text": "x"}', "missing_from"),
        (b'{"id": "m", "from": "a"}', "missing_text"),
        (b'{"id": "m", "from": "a", "text": null}', "missing_text"),
        (b'{"id": 7, "from": "a", "text": "x"}', "invalid_id"),
        (b'{"id": "m\\n", "from": "a", "text": "x"}', "invalid_id"),
        (b'{"id": "m", "from": "a b", "text": "x"}', "invalid_from"),
        (b'{"id": "m", "from": "", "text": "x"}', "invalid_from"),
        (b'{"id": "m", "from": ["a"], "text": "x"}', "invalid_from"),
        (b'{"id": "m", "from": "a", "text": "  "}', "invalid_text"),
        (b'{"id": "m", "from": "a", "text": {"body": "x"}}', "invalid_text"),
        (b'{"id": "m", "from": "a", "text": "x", "name": 3}', "invalid_name"),
        (b'{"id": "m", "from": "a", "text": "x", "name": "A\\nB"}', "invalid_name"),
    ],
)
def test_a_bad_body_names_its_field(raw: bytes, code: str) -> None:
    with pytest.raises(PayloadError) as refused:
        parse_incoming(raw)
    assert refused.value.code == code


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children)
    ),
    max_leaves=12,
)
fields = st.fixed_dictionaries(
    {},
    optional={"id": json_values, "from": json_values, "text": json_values, "name": json_values},
)


@given(st.one_of(st.binary(max_size=100), fields.map(lambda d: json.dumps(d).encode())))
def test_the_parser_refuses_anything_with_a_payload_error_only(raw: bytes) -> None:
    try:
        message = parse_incoming(raw)
    except PayloadError as exc:
        assert exc.code in {"invalid_json", "invalid_body"} or exc.code.split("_", 1)[1] in {
            "id",
            "from",
            "text",
            "name",
        }
    else:  # what passes makes a URN the contact rules accept as it is
        assert normalize_urn(message.urn) == message.urn


@given(st.text(max_size=140))
def test_the_channel_and_the_contact_rules_agree_on_ext_urns(path: str) -> None:
    try:
        core = normalize_urn(f"ext:{path}") == f"ext:{path}"
    except UrnError:
        core = False
    assert bool(EXT_PATH.fullmatch(path)) == core


@pytest.mark.parametrize("urn", ["ext:a b", "ext:" + "x" * 129, "ext:a\x00"])
def test_the_ext_urn_rule(urn: str) -> None:
    with pytest.raises(UrnError, match="ext URN"):
        normalize_urn(urn)
    assert normalize_urn(" ext:crm-42 ") == "ext:crm-42"
    assert normalize_urn("ext:" + "é" * 128) == "ext:" + "é" * 128


# -- the outbound body and what the answer means ------------------------------------------------
def test_the_outbound_body() -> None:
    message = {"uuid": "u1", "urn": "ext:crm-42", "text": "¿Sí?", "quick_replies": ["Sí", "No"]}
    assert json.loads(outgoing(message)) == {
        "id": "u1",
        "to": "crm-42",
        "text": "¿Sí?",
        "quick_replies": ["Sí", "No"],
    }
    assert json.loads(outgoing({**message, "quick_replies": None}))["quick_replies"] == []
    for record, code in (
        ({**message, "urn": "whatsapp:+51987650123"}, "unsupported_urn"),
        ({**message, "attachment": "image:https://x.pe/a.jpg"}, "unsupported_attachment"),
        ({**message, "text": "", "template": {"name": "t"}}, "empty_message"),
    ):
        with pytest.raises(Unsendable) as refused:
            outgoing(record)
        assert refused.value.code == code


@pytest.mark.parametrize(
    ("status", "retry", "code"),
    [
        (200, None, None),
        (204, None, None),
        (500, 2.0, "http_500"),
        (503, 2.0, "http_503"),
        (408, 2.0, "http_408"),
        (429, 2.0, "http_429"),
        (400, None, "http_400"),
        (404, None, "http_404"),
        (410, None, "http_410"),
        (301, None, "http_301"),
    ],
)
def test_what_an_answer_means(status: int, retry: float | None, code: str | None) -> None:
    result = answered(status, "no such\n contact ", message_id="u1", attempt=1, base=2.0)
    assert result.ok == (code is None)
    assert result.retry_after == retry
    if result.ok:
        assert result.external_id == "u1"
        return
    assert result.error is not None
    assert (result.error["code"], result.error["http_status"]) == (code, status)
    assert result.error["kind"] == ("retry" if retry else "never")
    if 400 <= status < 500 and not retry:  # a human reason, quoting the receiver
        assert result.error["message"] == (
            f"the receiver refused the message with HTTP {status}: no such contact"
        )


def test_the_backoff_doubles_and_a_retry_after_header_wins() -> None:
    assert [delay(2.0, n) for n in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 16.0]
    assert delay(2.0, 30) == 900.0
    assert delay(2.0, 1, "120") == 120.0
    assert delay(2.0, 3, "1") == 8.0
    assert delay(2.0, 1, "Wed, 21 Oct 2026 07:28:00 GMT") == 2.0
    result = answered(429, "", message_id="u", attempt=2, base=1.0, retry_after="30")
    assert result.retry_after == 30.0


# -- settings ------------------------------------------------------------------------------------
def config(**settings: Any) -> dict[str, ChannelConfig]:
    base = {"type": "http", "send_url": "https://example.com/in", "secret": SECRET}
    return {"web": ChannelConfig.model_validate({**base, **settings})}


def test_good_settings() -> None:
    validate_channels(config())
    validate_channels(config(send_url="http://127.0.0.1:9/x", allow_private=True))


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"secret": "hunter2-is-my-secret"}, "must start with whsec_"),
        ({"secret": "whsec_not*base64-hunter2"}, "not valid base64"),
        ({"secret": "whsec_" + base64.b64encode(b"short-hunter2").decode()}, "24 to 64 bytes"),
        ({"send_url": "ftp://example.com"}, "an http(s) URL"),
        ({"send_url": "http://127.0.0.1:8080/in"}, "set allow_private = true"),
        ({"send_url": "http://[::ffff:10.0.0.1]/in"}, "set allow_private = true"),
        ({"retry_delay": "soon"}, "bad duration"),
        ({"token": "x"}, "token"),
    ],
)
def test_bad_settings_say_what_to_fix_and_never_quote_the_secret(
    settings: dict[str, Any], says: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        validate_channels(config(**settings))
    assert says in str(refused.value)
    assert str(refused.value).startswith("channels.web:")
    assert "hunter2" not in str(refused.value)
