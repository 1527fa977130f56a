"""A contact with several URNs, one per scheme: created and changed over the API, found by any
of them, reached on the channel ``update_contact: {channel}`` chooses, its history holding the
messages of every channel. Real HTTP: Chasqui with the WhatsApp sandbox and the console."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.support.whatsapp import ANA, WA, AiohttpServer, start_wa

TWO = """
name: Two channels
language: es
nodes:
  - id: console
    update_contact: {channel: console}
    next: one
  - id: one
    send_message: {text: "por la consola a @contact.urn", quick_replies: ["Sí", "No"]}
    next: whatsapp
  - id: whatsapp
    update_contact: {channel: whatsapp}
    next: two
  - id: two
    send_message: {text: "por WhatsApp a @contact.urn", quick_replies: ["Sí", "No"]}
    next: ask
  - id: ask
    wait_for_reply:
      result: answer
      cases: [{has_any_word: ["no"], category: "No"}]
      other: {category: Other}
"""

WA_URN = f"whatsapp:+{ANA}"


@pytest.fixture
async def wa(
    aiohttp_server: AiohttpServer, valkey_url: str, redis: Redis, tmp_path: Path
) -> AsyncIterator[WA]:
    others = {"console": {"type": "console"}}
    wa = await start_wa(aiohttp_server, valkey_url, tmp_path, {"two": TWO}, others=others)
    yield wa
    await wa.http.close()


async def _create(wa: WA, urns: list[str], name: str = "Ana") -> tuple[int, Any]:
    return await wa.api("POST", "/api/v1/contacts", {"urns": urns, "name": name})


async def _found(wa: WA, urn: str) -> list[str]:
    status, body = await wa.api("GET", f"/api/v1/contacts?urn={urn.replace('+', '%2B')}")
    assert status == 200, body
    return [c["uuid"] for c in body["contacts"]]


async def test_a_contact_has_a_urn_per_scheme_and_is_found_by_each(wa: WA) -> None:
    status, ana = await _create(wa, [WA_URN, "console:ana"])
    assert status == 201, ana
    assert ana["urns"] == [WA_URN, "console:ana"]
    assert await _found(wa, WA_URN) == await _found(wa, "console:ana") == [ana["uuid"]]

    status, body = await _create(wa, ["console:bo", "console:ana"], name="Bo")
    assert status == 400 and body["error"]["code"] == "invalid_urn"
    assert "one URN per scheme" in body["error"]["message"]
    status, body = await _create(wa, ["telegram:42", "console:ana"], name="Bo")
    assert status == 409 and body["error"]["code"] == "urn_in_use"
    assert body["error"]["details"] == {"contact": ana["uuid"], "urn": "console:ana"}
    assert await _found(wa, "telegram:42") == []  # a refused contact indexes none of its URNs


async def test_changing_the_urns_moves_the_index(wa: WA) -> None:
    _, ana = await _create(wa, [WA_URN, "console:ana"])
    _, bo = await _create(wa, ["console:bo"], name="Bo")
    path = f"/api/v1/contacts/{ana['uuid']}"
    status, body = await wa.api("PATCH", path, {"urns": ["console:ana2", "telegram:42", WA_URN]})
    assert status == 200, body
    assert body["urns"] == ["console:ana2", "telegram:42", WA_URN]
    assert await _found(wa, "console:ana") == []
    assert await _found(wa, "telegram:42") == [ana["uuid"]]
    _, searched = await wa.api("GET", "/api/v1/contacts?q=ana2")  # the search index follows
    assert [c["uuid"] for c in searched["contacts"]] == [ana["uuid"]]
    assert await _create(wa, ["console:ana"], name="New") == (201, await _one(wa, "console:ana"))

    status, body = await wa.api("PATCH", path, {"urns": ["console:bo", WA_URN]})
    assert status == 409
    assert body["error"]["details"] == {"contact": bo["uuid"], "urn": "console:bo"}
    _, kept = await wa.api("GET", path)
    assert kept["urns"] == ["console:ana2", "telegram:42", WA_URN]  # nothing changed
    assert await _found(wa, "console:bo") == [bo["uuid"]]
    status, body = await wa.api("PATCH", path, {"urns": []})
    assert status == 400 and body["error"]["code"] == "invalid_body"


async def _one(wa: WA, urn: str) -> dict[str, Any]:
    _, body = await wa.api("GET", f"/api/v1/contacts?urn={urn}")
    return dict(body["contacts"][0])


async def test_the_flow_chooses_the_channel_and_the_history_holds_both(wa: WA) -> None:
    _, ana = await _create(wa, [WA_URN, "console:ana"])
    cid = ana["uuid"]
    await wa.inbound(text="hola")  # on WhatsApp: opens its window, lands in the same contact
    await wa.start(cid, "two")
    out = await wa.settled(cid, 2)
    by_text = {m["text"]: m for m in out}
    # no buttons on the console: numbered; @contact.urn is the URN of the channel in use
    console = by_text["por la consola a console:ana\n\n1. Sí\n2. No"]
    assert (console["channel"], console["urn"]) == ("console", "console:ana")
    whatsapp = by_text[f"por WhatsApp a {WA_URN}"]
    assert (whatsapp["channel"], whatsapp["urn"]) == ("whatsapp", WA_URN)
    assert whatsapp["quick_replies"] == ["Sí", "No"]
    (sent,) = await wa.sent()  # only the WhatsApp one went to Meta, as buttons
    assert sent["body"]["interactive"]["type"] == "button"
    inbound = await wa.messages(cid, "in")
    assert [(m["channel"], m["text"]) for m in inbound] == [("whatsapp", "hola")]
    _, contact = await wa.api("GET", f"/api/v1/contacts/{cid}")
    assert contact["urns"] == [WA_URN, "console:ana"]


async def test_the_csv_import_gives_a_contact_more_urns(wa: WA) -> None:
    _, bo = await _create(wa, ["console:bo"], name="Bo")
    text = (
        "urn,urn:telegram,urn:console,name\n"
        f"{WA_URN},42,ana,Ana\n"  # new: three URNs
        "console:bo,telegram:43,,Bo\n"  # known: one more
        "whatsapp:+5511987650300,42,,Eve\n"  # telegram:42 is Ana's now
        "ext:x,1,console:y,X\n"  # ext and console... and a telegram "1"
        "whatsapp:+5511987650301,abc,,Bad\n"  # not a telegram chat id
    )
    headers = {"Authorization": "Bearer e2e-admin-token", "Content-Type": "text/csv"}
    async with wa.http.post(
        wa.base + "/api/v1/contacts/import", data=text.encode(), headers=headers
    ) as r:
        assert r.status == 200, await r.text()
        report = await r.json()
    assert (report["created"], report["updated"]) == (2, 1), report
    assert sorted((e["row"], e["code"]) for e in report["errors"]) == [
        (4, "urn_in_use"),
        (6, "invalid_urn"),
    ]
    ana = await _one(wa, WA_URN)
    assert ana["urns"] == [WA_URN, "telegram:42", "console:ana"]
    assert await _found(wa, "telegram:42") == await _found(wa, "console:ana") == [ana["uuid"]]
    assert (await _one(wa, "telegram:43"))["uuid"] == bo["uuid"]
    assert await _found(wa, "whatsapp:+5511987650300") == []

    # a later import's URN of a scheme replaces the contact's
    again = "urn,urn:telegram\nconsole:bo,44\n"
    async with wa.http.post(
        wa.base + "/api/v1/contacts/import", data=again.encode(), headers=headers
    ) as r:
        assert (await r.json())["updated"] == 1
    assert (await _one(wa, "console:bo"))["urns"] == ["console:bo", "telegram:44"]
    assert await _found(wa, "telegram:43") == []
