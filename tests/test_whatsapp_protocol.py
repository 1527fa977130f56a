"""The WhatsApp protocol layer (channels/whatsapp/): pure functions, table-driven from
tests/data/whatsapp/*.json (payloads from the Cloud API reference, junk, sends, errors, templates).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from channels.whatsapp.protocol import (
    OutboundError,
    TemplateInfo,
    build_mark_read,
    build_send,
    check_template_params,
    classify_error,
    classify_failed_status,
    parse_send_response,
    parse_template,
    parse_template_page,
    parse_webhook,
    send_target,
    urn_for,
    valid_signature,
    verify_challenge,
    window_open,
)

DATA = Path(__file__).parent / "data" / "whatsapp"


def load(name: str) -> Any:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def ids(cases: list[dict[str, Any]]) -> list[str]:
    return [c["name"] for c in cases]


def as_plain(value: Any) -> Any:
    """Dataclasses to dicts, tuples to lists: comparable with JSON."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: as_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [as_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: as_plain(v) for k, v in value.items()}
    return value


def assert_subset(actual: Any, expected: Any, path: str = "") -> None:
    """Every key of ``expected`` dicts matches in ``actual``; lists match item by item."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: {actual!r} is not a mapping"
        for key, value in expected.items():
            assert key in actual, f"{path}.{key} missing in {actual!r}"
            assert_subset(actual[key], value, f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{path}: {actual!r} is not a list"
        assert len(actual) == len(expected), f"{path}: {len(actual)} items, expected {expected!r}"
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_subset(a, e, f"{path}[{i}]")
    else:
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"


def assert_notes(notes: list[str], wanted: list[str]) -> None:
    """One note per wanted fragment, in any order."""
    assert len(notes) == len(wanted), notes
    left = list(notes)
    for fragment in wanted:
        match = next((n for n in left if fragment in n), None)
        assert match is not None, (fragment, notes)
        left.remove(match)


# ---------------------------------------------------------------- signature and verification

VECTOR = load("signature.json")


def test_signature_vector_accepts_the_raw_bytes() -> None:
    raw = VECTOR["body"].encode()
    assert len(raw) == VECTOR["body_bytes"]
    assert valid_signature(raw, VECTOR["header"], VECTOR["secret"])
    assert valid_signature(
        raw, VECTOR["header"].upper().replace("SHA256", "sha256"), VECTOR["secret"]
    )
    batch = parse_webhook(json.loads(raw))
    assert [m.text for m in batch.messages] == [VECTOR["text"]]


def test_signature_vector_negative_reserialised_json() -> None:
    raw = VECTOR["body"].encode()
    reserialised = json.dumps(json.loads(raw), separators=(",", ":"), ensure_ascii=False).encode()
    digest = hmac.new(VECTOR["secret"].encode(), reserialised, hashlib.sha256).hexdigest()
    assert digest == VECTOR["reserialised_hex"]
    # a verifier hashing re-serialised JSON gets this header, which must not verify the raw body
    assert not valid_signature(raw, f"sha256={digest}", VECTOR["secret"])
    assert not valid_signature(reserialised, VECTOR["header"], VECTOR["secret"])


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "sha256=",
        "sha1=" + "0" * 40,
        "ded53d61f7ff973321e1ee986e41f488014e4c29",
        "sha256 abc",
    ],
)
def test_signature_rejects_missing_or_malformed_headers(header: str | None) -> None:
    assert not valid_signature(VECTOR["body"].encode(), header, VECTOR["secret"])


def test_signature_rejects_wrong_secret_and_tampered_body() -> None:
    raw = VECTOR["body"].encode()
    assert not valid_signature(raw, VECTOR["header"], "other_secret")
    assert not valid_signature(raw, VECTOR["header"], "")
    assert not valid_signature(
        raw.replace(b"1767855600", b"1767855601"), VECTOR["header"], VECTOR["secret"]
    )


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (
            {
                "hub.mode": "subscribe",
                "hub.challenge": "1849320711",
                "hub.verify_token": "chasqui-verify-7f3a",
            },
            "1849320711",
        ),
        (
            {"hub.mode": "subscribe", "hub.challenge": "1849320711", "hub.verify_token": "wrong"},
            None,
        ),
        (
            {
                "hub.mode": "unsubscribe",
                "hub.challenge": "1",
                "hub.verify_token": "chasqui-verify-7f3a",
            },
            None,
        ),
        ({"hub.challenge": "1", "hub.verify_token": "chasqui-verify-7f3a"}, None),
        ({"hub.mode": "subscribe", "hub.challenge": "1"}, None),
    ],
)
def test_verify_challenge(query: dict[str, str], expected: str | None) -> None:
    assert verify_challenge(query, "chasqui-verify-7f3a") == expected


def test_verify_challenge_refuses_an_empty_configured_token() -> None:
    assert (
        verify_challenge(
            {"hub.mode": "subscribe", "hub.challenge": "1", "hub.verify_token": ""}, ""
        )
        is None
    )


# ---------------------------------------------------------------- inbound parsing

INBOUND = load("inbound.json")
JUNK = load("junk.json")


@pytest.mark.parametrize("case", INBOUND, ids=ids(INBOUND))
def test_parse_webhook(case: dict[str, Any]) -> None:
    batch = parse_webhook(case["payload"])
    expect = case["expect"]
    for key in ("messages", "statuses", "template_updates", "errors"):
        assert_subset(as_plain(getattr(batch, key)), expect.get(key, []), key)
    assert_notes(batch.skipped, expect["skipped"])
    if "urns" in expect:
        assert [m.urns for m in batch.messages] == expect["urns"]
        assert [m.urn for m in batch.messages] == [u[0] for u in expect["urns"]]
    if "is_reply" in expect:
        assert [m.is_reply for m in batch.messages] == expect["is_reply"]
    if "opens_window" in expect:
        assert [m.opens_window for m in batch.messages] == expect["opens_window"]
    if "failed_reason" in expect:
        assert [classify_failed_status(s).reason for s in batch.statuses] == expect["failed_reason"]


@pytest.mark.parametrize("case", JUNK, ids=ids(JUNK))
def test_parse_webhook_junk_never_raises(case: dict[str, Any]) -> None:
    batch = parse_webhook(case["payload"])
    expect = case["expect"]
    assert len(batch.messages) == expect["messages"]
    assert len(batch.statuses) == expect["statuses"]
    assert len(batch.template_updates) == expect["template_updates"]
    assert batch.skipped, "junk must be reported"
    assert_notes(batch.skipped, expect["skipped"])


def test_good_message_survives_junk_neighbours_with_its_own_contact() -> None:
    case = next(c for c in JUNK if c["name"].startswith("bad message items"))
    (message,) = parse_webhook(case["payload"]).messages
    assert (message.wamid, message.text, message.profile_name) == (
        "wamid.GOOD",
        "good",
        "Ana Quispe",
    )


def test_junk_values_everywhere_never_raise() -> None:
    """Mutate every leaf of a real payload into odd types: parsing may skip, never raise."""
    base = next(c for c in INBOUND if c["name"].startswith("multi-entry"))["payload"]
    base_text = json.dumps(base)
    paths: list[list[Any]] = []

    def walk(node: Any, path: list[Any]) -> None:
        paths.append(path)
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, [*path, k])
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, [*path, i])

    walk(base, [])
    junks: list[Any] = [None, 7, "x", [], {}, True, 1.5]
    for path in paths[1:]:
        for junk in junks:
            payload = json.loads(base_text)
            node = payload
            for step in path[:-1]:
                node = node[step]
            node[path[-1]] = junk
            batch = parse_webhook(payload)  # must not raise
            assert len(batch.messages) + len(batch.statuses) <= 5


# ---------------------------------------------------------------- URNs


@pytest.mark.parametrize(
    ("wa_id", "user_id", "urn", "target"),
    [
        ("51987650123", None, "whatsapp:+51987650123", {"to": "+51987650123"}),
        ("51987650123", "PE.40718236650194827731", "whatsapp:+51987650123", {"to": "+51987650123"}),
        (
            None,
            "PE.40718236650194827731",
            "whatsapp:bsuid:PE.40718236650194827731",
            {"recipient": "PE.40718236650194827731"},
        ),
        (
            None,
            "PE.ENT.90218735561420998812",
            "whatsapp:bsuid:PE.ENT.90218735561420998812",
            {"recipient": "PE.ENT.90218735561420998812"},
        ),
    ],
)
def test_urn_round_trip(
    wa_id: str | None, user_id: str | None, urn: str, target: dict[str, str]
) -> None:
    assert urn_for(wa_id, user_id) == urn
    assert send_target(urn) == target


@pytest.mark.parametrize(
    ("wa_id", "user_id"),
    [(None, None), ("", ""), ("+51 987", None), ("abc", None), (None, "no dot")],
)
def test_urn_for_rejects_bad_ids(wa_id: str | None, user_id: str | None) -> None:
    with pytest.raises(ValueError):
        urn_for(wa_id, user_id)


@pytest.mark.parametrize(
    "urn",
    [
        "telegram:123",
        "whatsapp",
        "whatsapp:",
        "whatsapp:+12ab",
        "whatsapp:bsuid:",
        "whatsapp:bsuid:x y",
    ],
)
def test_send_target_rejects_bad_urns(urn: str) -> None:
    with pytest.raises(ValueError):
        send_target(urn)


# ---------------------------------------------------------------- outbound

OUTBOUND = load("outbound.json")
TEMPLATES = load("templates.json")
INFOS = {item["name"]: parse_template(item) for item in TEMPLATES["api_items"]}


@pytest.mark.parametrize("case", OUTBOUND, ids=ids(OUTBOUND))
def test_build_send(case: dict[str, Any]) -> None:
    info = INFOS[case["template_info"]] if "template_info" in case else None
    kwargs: dict[str, Any] = {"template_info": info}
    if "list_button" in case:
        kwargs["list_button"] = case["list_button"]
    if "error" in case:
        with pytest.raises(OutboundError) as raised:
            build_send(case["message"], **kwargs)
        assert raised.value.code == case["error"]
        assert raised.value.as_error()["code"] == case["error"]
    else:
        assert build_send(case["message"], **kwargs) == case["expect"]


def test_quick_reply_ids_match_back_to_the_title() -> None:
    """A tap on a button or list row comes back with the id: the title the flow wrote."""
    long = "Quiero hablar con una persona de ventas"
    for replies in (["Sí", "No"], ["Sí", long], [f"Opción {i}" for i in range(10)]):
        body = build_send({"urn": "whatsapp:+51987650123", "text": "?", "quick_replies": replies})
        action = body["interactive"]["action"]
        if "buttons" in action:
            got = [b["reply"]["id"] for b in action["buttons"]]
        else:
            got = [r["id"] for s in action["sections"] for r in s["rows"]]
            assert all(len(r["title"]) <= 24 for s in action["sections"] for r in s["rows"])
        assert got == replies


def test_mark_read() -> None:
    assert build_mark_read("wamid.TEST_IN_0003") == {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": "wamid.TEST_IN_0003",
    }
    assert build_mark_read("wamid.X", typing=True)["typing_indicator"] == {"type": "text"}


def test_parse_send_response() -> None:
    accepted = parse_send_response(
        {
            "messaging_product": "whatsapp",
            "contacts": [{"input": "+51987650123", "wa_id": "51987650123"}],
            "messages": [{"id": "wamid.TEST_OUT_0012", "message_status": "accepted"}],
        }
    )
    assert accepted is not None
    assert (accepted.wamid, accepted.message_status, accepted.wa_id, accepted.user_id) == (
        "wamid.TEST_OUT_0012",
        "accepted",
        "51987650123",
        None,
    )
    bsuid = parse_send_response(
        {"contacts": [{"input": "PE.1", "user_id": "PE.1"}], "messages": [{"id": "wamid.B"}]}
    )
    assert bsuid is not None and (bsuid.user_id, bsuid.message_status) == ("PE.1", None)
    junks: list[Any] = [None, {}, {"messages": []}, {"messages": [{"id": ""}]}, {"success": True}]
    for junk in junks:
        assert parse_send_response(junk) is None


@pytest.mark.parametrize(
    ("last", "now", "margin", "expected"),
    [
        (None, 1000.0, 120, False),
        (0.0, 0.0, 120, True),
        (0.0, 86400 - 121, 120, True),
        (0.0, 86400 - 120, 120, False),
        (0.0, 86399, 0, True),
        (0.0, 86400, 0, False),
        (1000.0, 500.0, 120, True),
    ],
)
def test_window_open(last: float | None, now: float, margin: float, expected: bool) -> None:
    assert window_open(last, now, margin) is expected


# ---------------------------------------------------------------- errors

ERRORS = load("errors.json")


def test_error_table_covers_every_code() -> None:
    from channels.whatsapp.errors import RULES

    table = {row["code"] for row in ERRORS["codes"]}
    assert set(RULES) <= table, set(RULES) - table


@pytest.mark.parametrize("row", ERRORS["codes"], ids=[str(r["code"]) for r in ERRORS["codes"]])
def test_classify_error_codes(row: dict[str, Any]) -> None:
    body = {
        "error": {
            "message": f"(#{row['code']}) Some title",
            "type": "OAuthException",
            "code": row["code"],
            "error_data": {"messaging_product": "whatsapp", "details": "why"},
            "error_subcode": 2494010,
            "fbtrace_id": "ATESTtrace0001xyz",
        }
    }
    got = classify_error(400, body)
    assert (got.kind, got.reason, got.code, got.known) == (
        row["kind"],
        row["reason"],
        row["code"],
        True,
    )
    assert (got.title, got.details, got.hint) == ("Some title", "why", row["hint"])
    assert got.retry_after == row["retry_after"]
    assert (got.max_attempts == 3) is row["few_attempts"]
    assert got.retryable is (row["kind"] in ("retry", "retry_recipient"))
    # the same code inside a failed status webhook classifies the same way
    status_error = {
        "code": row["code"],
        "title": "T",
        "message": "M",
        "error_data": {"details": "D"},
    }
    again = classify_error(None, status_error)
    assert (again.kind, again.reason, again.title, again.details) == (
        row["kind"],
        row["reason"],
        "T",
        "D",
    )


EXCEPTIONS: dict[str, BaseException] = {
    "TimeoutError": TimeoutError(),
    "ConnectionRefusedError": ConnectionRefusedError("refused"),
    "ClientConnectionError": aiohttp.ClientConnectionError("reset"),
    "ValueError": ValueError("bad json"),
}


@pytest.mark.parametrize("row", ERRORS["transport"], ids=ids(ERRORS["transport"]))
def test_classify_error_without_code(row: dict[str, Any]) -> None:
    exc = EXCEPTIONS[row["exc"]] if "exc" in row else None
    got = classify_error(row.get("http_status"), row.get("body"), exc)
    assert (got.kind, got.reason, got.known) == (row["kind"], row["reason"], row.get("known", True))
    assert (got.retry_after is not None) is got.retryable


def test_retry_after_grows_per_attempt_and_is_capped() -> None:
    pair = {"error": {"code": 131056}}
    assert [classify_error(400, pair, attempt=n).retry_after for n in range(4)] == [1, 4, 16, 64]
    assert classify_error(400, pair, attempt=20).retry_after == 900
    throttle = {"error": {"code": 130429}}
    assert [classify_error(429, throttle, attempt=n).retry_after for n in range(3)] == [1, 2, 4]
    assert classify_error(None, None, TimeoutError(), attempt=30).retry_after == 900
    assert classify_error(400, {"error": {"code": 131047}}, attempt=3).retry_after is None


def test_as_error_for_the_send_result() -> None:
    body = {
        "error": {
            "message": "(#131056) (Business Account, Consumer Account) pair rate limit hit",
            "code": 131056,
            "error_data": {"details": "Too many messages to the same recipient in a short time."},
        }
    }
    assert classify_error(400, body).as_error() == {
        "code": "pair_rate_limited",
        "kind": "retry_recipient",
        "message": "Too many messages to the same recipient in a short time.",
        "whatsapp_code": 131056,
        "title": "(Business Account, Consumer Account) pair rate limit hit",
        "http_status": 400,
    }


# ---------------------------------------------------------------- templates


@pytest.mark.parametrize(
    "item", TEMPLATES["api_items"], ids=[i["name"] for i in TEMPLATES["api_items"]]
)
def test_parse_template(item: dict[str, Any]) -> None:
    assert_subset(as_plain(parse_template(item)), TEMPLATES["parsed"][item["name"]])


def test_parse_template_page() -> None:
    page = parse_template_page(TEMPLATES["page"])
    assert [t.key for t in page.templates] == [
        ("order_ready", "es_MX"),
        ("booking_reminder", "pt_BR"),
    ]
    assert page.next_after == "TESTCURSORAFTER"
    assert page.skipped == ["data[2]: template without name or language"]
    last = parse_template_page({"data": [], "paging": {"cursors": {"after": "X"}}})
    assert last.next_after is None and last.templates == []
    assert parse_template_page({"error": {"code": 190}}).skipped == ["data: missing or not a list"]


def _info(case: dict[str, Any]) -> TemplateInfo | None:
    if case["template"] is None:
        return None
    info = INFOS[case["template"]]
    if "status" in case:
        info = dataclasses.replace(info, status=case["status"])
    return info


@pytest.mark.parametrize("case", TEMPLATES["checks"], ids=ids(TEMPLATES["checks"]))
def test_check_template_params(case: dict[str, Any]) -> None:
    problem = check_template_params(
        _info(case), case["block"], language=case["language"], available_languages=case["available"]
    )
    if case["expect"] is None:
        assert problem is None, problem
        return
    assert problem is not None
    assert problem.code == case["expect"], problem
    assert_subset(problem.details, case.get("details", {}))
    if "message" in case:
        assert case["message"] in problem.message


def test_checked_templates_build_without_error() -> None:
    """Whatever passes the check also builds, with the template's own button indexes."""
    for case in TEMPLATES["checks"]:
        info = _info(case)
        if case["expect"] is not None or info is None:
            continue
        body = build_send(
            {"urn": "whatsapp:+51987650123", "template": case["block"]}, template_info=info
        )
        indexes = [
            c["index"] for c in body["template"].get("components", []) if c["type"] == "button"
        ]
        kinds = {b.index: b.accepts for b in info.buttons}
        for component in body["template"].get("components", []):
            if component["type"] == "button":
                assert kinds[int(component["index"])] == component["sub_type"]
        assert len(indexes) == len(set(indexes))
