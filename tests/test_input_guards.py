"""What the server refuses at its doors: JSON it cannot hold, media ids that are paths, webhook
addresses that hide an internal IPv4 inside IPv6 (issue #9, "Files and input").

HTTP tests run the real app over loopback (the ``api`` and ``wa`` fixtures of tests/conftest.py);
the address guard and the JSON loader are also checked on their own.
"""

from __future__ import annotations

import ipaddress
import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.core.jsonin import loads
from bot.core.netguard import is_public
from bot.work.ingest import Ingest
from bot.work.webhook_calls import WebhookCaller
from channels.protocol import Message, Status
from channels.whatsapp.inbound import parse_webhook
from channels.whatsapp.sandbox import encode
from tests.support.api import AUTH, MAX_BODY, Api, assert_error, new_contact
from tests.support.harness import CapturingChannel, MakeBot
from tests.support.whatsapp import ANA, PNID, WA
from tests.support.whatsapp import AUTH as WA_AUTH

DEEP = "[" * 100_000


# -- JSON in -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [DEEP, "NaN", "[Infinity]", '{"lat": -Infinity}', "1e400", '{"a": [1, -1e999]}'],
    ids=["deep", "nan", "infinity", "minus-infinity", "overflow", "overflow-nested"],
)
def test_the_json_loader_refuses_deep_and_non_finite(text: str) -> None:
    with pytest.raises(ValueError):
        loads(text)
    with pytest.raises(ValueError):
        loads(text.encode())


def test_the_json_loader_reads_ordinary_json() -> None:
    assert loads(b'{"a": [1, 2.5, -3e2, null, true, "x"]}') == {
        "a": [1, 2.5, -300.0, None, True, "x"]
    }
    nested = loads("[" * 200 + "]" * 200)  # deep enough for any honest payload
    for _ in range(199):
        (nested,) = nested
    assert nested == []


@pytest.mark.parametrize(
    "path",
    ["/api/v1/contacts", "/api/v1/groups", "/api/v1/starts", "/api/v1/contacts/{cid}/start"],
)
@pytest.mark.parametrize("data", ["[" * (MAX_BODY - 8), '{"name": NaN}'], ids=["deep", "nan"])
async def test_every_json_route_answers_400_to_deep_or_non_finite_json(
    api: Api, path: str, data: str
) -> None:
    cid = await new_contact(api)
    headers = {**AUTH, "Content-Type": "application/json"}
    status, body = await api.post(path.format(cid=cid), data=data.encode(), headers=headers)
    assert_error(status, body, 400, "invalid_body")


def _webhook(**message: Any) -> dict[str, Any]:
    base = {"from": ANA, "id": "wamid.GUARD", "timestamp": "1767855600", "type": "text"}
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"phone_number_id": PNID},
        "messages": [{**base, **message}],
    }
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}],
    }


async def test_the_webhook_answers_400_to_deep_or_non_finite_json(wa: WA) -> None:
    assert (await wa.post_webhook(DEEP.encode()))[0] == 400
    located = encode(_webhook(type="location", location={"latitude": 1.0, "longitude": 2.0}))
    assert b"1.0" in located
    assert (await wa.post_webhook(located.replace(b"1.0", b"NaN", 1)))[0] == 400
    assert (await wa.post_webhook(located.replace(b"1.0", b"1e999", 1)))[0] == 400
    assert (await wa.post_webhook(located))[0] == 200


# -- media ids ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "media_id", ["..%2F..%2Fme", "..%5Cme", "123%2Fmessages", "12ab", "1%3Fx=1", "1" * 65]
)
async def test_a_media_id_that_is_not_metas_is_refused(wa: WA, media_id: str) -> None:
    url = f"{wa.base}/api/v1/channels/whatsapp/media/{media_id}"
    async with wa.http.get(url, headers=WA_AUTH) as response:
        body = await response.json()
    assert_error(response.status, body, 400, "bad_request")
    assert "media id" in body["error"]["message"]


# -- call_webhook's address guard ----------------------------------------------------------------
def _embeddings(v4: ipaddress.IPv4Address) -> list[str]:
    """The ways an IPv4 address can hide inside an IPv6 one."""
    n = int(v4)
    return [
        f"::ffff:{v4}",  # IPv4-mapped
        str(ipaddress.IPv6Address(n)),  # IPv4-compatible (deprecated, still routed by some)
        str(ipaddress.IPv6Address((0x2002 << 112) | (n << 80))),  # 6to4
        str(ipaddress.IPv6Address((0x64FF9B << 96) | n)),  # NAT64, well-known prefix
        str(ipaddress.IPv6Address((0x64FF9B0001 << 80) | (n << 16))),  # NAT64, local use
    ]


@pytest.mark.parametrize(
    "address",
    ["::127.0.0.1", "2002:7f00:1::", "64:ff9b::7f00:1", "::ffff:127.0.0.1", "64:ff9b::a00:1"],
)
def test_ipv4_hidden_in_ipv6_is_not_public(address: str) -> None:
    assert not is_public(address)


@given(st.ip_addresses(v=4))
def test_an_embedded_ipv4_is_public_only_when_the_ipv4_is(v4: ipaddress.IPv4Address) -> None:
    if not (v4.is_global and not v4.is_multicast):
        for address in _embeddings(v4):
            assert not is_public(address), address
    else:  # not simply "refuse IPv6": a public IPv4 behind NAT64 or mapped stays reachable
        assert is_public(f"64:ff9b::{v4}") and is_public(f"::ffff:{v4}")


@given(st.ip_addresses(v=6))
def test_the_guard_never_lets_more_through_than_is_global(v6: ipaddress.IPv6Address) -> None:
    if is_public(str(v6)):
        assert v6.is_global and not v6.is_multicast


@pytest.mark.parametrize("host", ["[::127.0.0.1]", "[::ffff:7f00:1]", "[64:ff9b::7f00:1]"])
async def test_call_webhook_refuses_an_address_literal_hiding_loopback(host: str) -> None:
    caller = WebhookCaller(allow_private=False)
    try:
        answer = await caller.call({"url": f"http://{host}:9/x", "method": "GET", "timeout": 2})
    finally:
        await caller.close()
    assert answer["status"] == 0
    assert "non-public address" in answer["error"]


# -- inbound times and numbers -------------------------------------------------------------------
async def test_an_inbound_time_from_the_future_is_clamped_to_the_receive_time(
    make_bot: MakeBot,
) -> None:
    bot = await make_bot()
    bot.channels["cap"] = CapturingChannel("cap", bot.store)
    bot.worker = bot.new_worker()
    ingest = Ingest(bot.store, bot.channels, clock=bot.clock.now)
    now = bot.clock.now()
    await ingest.accept(
        [
            Message("cap", "tel:+15550001", "m1", 1e20, "hola"),
            Message("cap", "tel:+15550002", "m2", math.inf, "hola"),
            Message("cap", "tel:+15550003", "m3", math.nan, "hola"),
        ]
    )
    await ingest.accept([Status("cap", "wamid.x", "read", 1e20)])  # unknown: no harm either
    await bot.drain()
    for urn in ("tel:+15550001", "tel:+15550002", "tel:+15550003"):
        cid = await bot.store.contact_id_for_urn(urn)
        assert cid is not None
        contact = await bot.get_contact(cid)
        # the 24-hour window counts from when the message could at the latest have been sent
        assert contact["created_on"] == now, urn
        assert contact["last_inbound"]["cap"] == now, urn
    # an honest past time is kept as it is (Meta's time, not the receive time)
    await ingest.accept([Message("cap", "tel:+15550001", "m4", now - 30, "again")])
    await bot.drain()
    cid = await bot.store.contact_id_for_urn("tel:+15550001")
    assert cid is not None
    assert (await bot.get_contact(cid))["last_inbound"]["cap"] == now


@pytest.mark.parametrize("value", ["NaN", "inf", "-Infinity", "1e999"])
def test_a_location_with_a_non_finite_number_in_a_string_is_skipped(value: str) -> None:
    """JSON itself refuses NaN (above); Meta's numbers may come as strings, read here."""
    payload = _webhook(type="location", location={"latitude": value, "longitude": 2.0})
    batch = parse_webhook(payload)
    assert batch.messages == [] and "latitude" in " ".join(batch.skipped)
    fine = _webhook(type="location", location={"latitude": "-12.5", "longitude": 2.0})
    (message,) = parse_webhook(fine).messages
    assert message.location is not None and message.location.latitude == -12.5


# -- names, send_at, spread_over -------------------------------------------------------------------
CONTROL = ["Ana\x00", "Ana\nLee", "Ana\tLee", "Ana\x1b[31m", "Ana\x7f", "Ana\x85", "Ana\u2028Lee"]


@pytest.mark.parametrize("name", CONTROL)
async def test_a_name_with_a_control_character_is_refused(api: Api, name: str) -> None:
    status, body = await api.post("/api/v1/contacts", {"urn": "ext:ctl", "name": name})
    assert status == 400 and "control" in json.dumps(body), body
    cid = await new_contact(api, "ext:ctl-ok", "Ana")
    status, body = await api.request("PATCH", f"/api/v1/contacts/{cid}", {"name": name})
    assert status == 400 and "control" in json.dumps(body), body
    status, body = await api.post("/api/v1/groups", {"name": name.replace(" ", "")})
    assert status == 400, body
    # emoji sequences (joined by ZWJ, a format character) and accents are names
    status, body = await api.post(
        "/api/v1/contacts", {"urn": "ext:fam", "name": "Zoë 👨\u200d👩\u200d👧"}
    )
    assert status == 201, body


async def test_an_imported_name_with_a_control_character_is_a_bad_row(api: Api) -> None:
    data = b"urn,name\next:c1,Ana\x07\next:c2,Bea\n"
    headers = {**AUTH, "Content-Type": "text/csv"}
    status, body = await api.request("POST", "/api/v1/contacts/import", data, headers=headers)
    assert status == 200, body
    assert (body["created"], [(e["row"], e["code"]) for e in body["errors"]]) == (
        1,
        [(2, "bad_row")],
    )
    assert "control" in body["errors"][0]["message"]


@pytest.mark.parametrize(
    ("send_at", "spread_over", "ok"),
    [
        (0, None, False),  # 1970: a mistake
        ("past-day", None, False),
        ("past-minutes", None, True),  # a little late: goes now
        ("ahead-year", None, True),
        ("ahead-2-years", None, False),
        ("milliseconds", None, False),  # now in ms: year 57,000
        (None, "7d", True),
        (None, "8d", False),
        (None, 8 * 86400, False),
    ],
)
async def test_send_at_and_spread_over_have_bounds(
    api: Api, send_at: Any, spread_over: Any, ok: bool
) -> None:
    now = api.runtime.clock.now()
    when = {
        "past-day": now - 86400,
        "past-minutes": now - 600,
        "ahead-year": now + 365 * 86400,
        "ahead-2-years": now + 730 * 86400,
        "milliseconds": now * 1000,
    }.get(send_at, send_at)
    cid = await new_contact(api, "ext:sched")
    spec: dict[str, Any] = {"flow": "greeting", "contacts": [cid]}
    if when is not None:
        spec["send_at"] = when
    if spread_over is not None:
        spec["spread_over"] = spread_over
    status, body = await api.post("/api/v1/starts", spec)
    if ok:
        assert status == 202, body
    else:
        assert_error(status, body, 400, "invalid_body")
        assert ("send_at" if send_at is not None else "spread_over") in body["error"]["message"]
