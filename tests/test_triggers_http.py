"""Triggers end to end: signed WhatsApp webhooks from the sandbox (real HTTP over loopback) to a
running Chasqui, whose worker starts the flow a message triggers and sends its reply."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.support.waiting import wait_for
from tests.support.whatsapp import WA

FLOWS = {
    "fresh": """
name: Fresh
triggers:
  - new_contact: true
nodes:
  - id: hi
    send_message: {text: "Welcome, @contact.name! You wrote: @trigger.text"}
""",
    "greet": """
name: Greet
triggers:
  - keywords: [hola, info]
nodes:
  - id: hi
    send_message: {text: "@trigger.type @trigger.keyword: hi @contact.first_name"}
""",
    "catch": """
name: Catch
triggers:
  - catch_all: true
nodes:
  - id: hi
    send_message: {text: "caught: @trigger.text"}
""",
    "menu": """
name: Menu
triggers:
  - keywords: [menu]
    match: whole_message
    interrupt: true
nodes:
  - id: hi
    send_message: {text: "the menu"}
""",
    "survey": """
name: Survey
nodes:
  - id: ask
    send_message: {text: "Did it arrive?"}
    next: answer
  - id: answer
    wait_for_reply:
      cases: [{has_any_word: ["yes", "no"], category: Answered}]
      other: {category: Other, next: ask}
""",
}


@pytest.fixture
def wa_flows() -> dict[str, str]:
    return FLOWS


async def said(wa: WA, phone: str, text: str, replies: int) -> tuple[str, list[str]]:
    """The contact at ``phone`` writes ``text`` (a signed webhook from the sandbox); its
    uuid and the texts it was sent, once there are ``replies`` of them."""
    await wa.inbound(**{"from": phone, "text": text})
    cid = (await wa.find(f"whatsapp:+{phone}"))["uuid"]
    out = await wa.settled(cid, replies)
    return cid, [m.get("text", "") for m in out]


async def stats(wa: WA, flow: str) -> dict[str, Any]:
    status, body = await wa.api("GET", f"/api/v1/flows/{flow}/stats")
    assert status == 200, body
    return dict(body)


async def test_a_new_contact_is_welcomed_then_keywords_and_the_catch_all_answer(wa: WA) -> None:
    phone = "51911100001"
    cid, out = await said(wa, phone, "¡Hola!", 1)
    # its first message ever: the new-contact trigger, before the keyword it also is
    assert out == ["Welcome, Ana Quispe! You wrote: ¡Hola!"]
    (run,) = await wa.runs(cid)
    assert (run["flow"], run["status"]) == ("fresh", "completed")

    _, out = await said(wa, phone, "HOLA amigos", 2)
    assert out[1] == "keyword hola: hi Ana"
    _, out = await said(wa, phone, "¿abren el domingo?", 3)
    assert out[2] == "caught: ¿abren el domingo?"

    inbound = await wa.messages(cid, "in")
    runs = await wa.runs(cid)
    assert [r["flow"] for r in runs] == ["catch", "greet", "fresh"]
    assert [m["run"] for m in inbound] == [r["uuid"] for r in reversed(runs)]
    assert {m["status"] for m in inbound} == {"handled"}
    greet = await stats(wa, "greet")
    assert greet["runs"]["started"] == 1 and greet["runs"]["completed"] == 1
    assert greet["triggers"] == {"keyword": 1, "catch_all": 0, "new_contact": 0}
    assert (await stats(wa, "catch"))["triggers"]["catch_all"] == 1
    assert (await stats(wa, "fresh"))["triggers"]["new_contact"] == 1


async def test_a_waiting_run_takes_the_reply_unless_an_interrupting_keyword(wa: WA) -> None:
    phone = "51911100002"
    cid, _ = await said(wa, phone, "hi there", 1)  # fresh
    await wa.start(cid, "survey")
    await wa.settled(cid, 2)
    # a keyword without interrupt is an answer to the question (asked again: "Other")
    _, out = await said(wa, phone, "hola", 3)
    assert out[2] == "Did it arrive?"
    (survey, _) = await wa.runs(cid)
    assert (survey["flow"], survey["status"]) == ("survey", "waiting")
    # "menu" says interrupt: true: the survey ends interrupted, the menu starts
    _, out = await said(wa, phone, "Menú.", 4)
    assert out[3] == "the menu"
    menu, survey, _ = await wa.runs(cid)
    assert (menu["flow"], menu["status"]) == ("menu", "completed")
    assert (survey["flow"], survey["status"]) == ("survey", "interrupted")
    assert (await stats(wa, "survey"))["triggers"] == {
        "keyword": 0,
        "catch_all": 0,
        "new_contact": 0,
    }


async def test_opt_out_words_come_before_every_trigger(wa: WA) -> None:
    phone = "51911100003"
    cid, out = await said(wa, phone, "STOP", 1)  # a new contact, whose first message is STOP
    assert out[0].startswith("Listo: no te enviaremos más mensajes")  # STOP is Spanish first
    contact = await wa.find(f"whatsapp:+{phone}")
    assert contact["status"] == "opted_out"
    assert await wa.runs(cid) == []
    # an opted-out contact's keyword starts nothing (only START opts back in)
    await wa.inbound(**{"from": phone, "text": "hola"})

    async def recorded() -> bool:
        return len(await wa.messages(cid, "in")) == 2

    await wait_for(recorded, "the second message recorded")
    assert await wa.runs(cid) == []
    assert len(await wa.messages(cid, "out")) == 1


async def test_the_starts_history_holds_one_record_per_flow_and_day(wa: WA) -> None:
    a, b = "51911100004", "51911100005"
    await said(wa, a, "hi", 1)  # fresh
    await said(wa, a, "hola", 2)
    await said(wa, a, "Hola!", 3)  # the same contact again, the same day
    await said(wa, b, "hey", 1)  # fresh
    cid_b, _ = await said(wa, b, "info", 2)
    status, body = await wa.api("GET", "/api/v1/starts?flow=greet")
    assert status == 200, body
    (record,) = body["starts"]
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert (record["kind"], record["day"], record["status"], record["runs"]) == (
        "trigger",
        today,
        "completed",
        3,
    )
    assert record["counts"]["targeted"] == record["counts"]["started"] == 2
    assert record["params"] == {} and record["sending"] == 0

    async def sent() -> bool:  # the sandbox's statuses come back through the webhook
        _, body = await wa.api("GET", f"/api/v1/starts/{record['uuid']}")
        return bool(body["messages"]["sent"] == 3)

    await wait_for(sent, "the three greetings counted as sent")
    status, body = await wa.api("GET", f"/api/v1/starts/{record['uuid']}/contacts")
    assert cid_b in {c["contact"] for c in body["contacts"]}
    # each run names its record; the first messages of both contacts are that flow's "fresh" day
    (greet_b, fresh_b) = await wa.runs(cid_b)
    assert greet_b["start"] == record["uuid"] and fresh_b["start"] != record["uuid"]
    status, body = await wa.api("GET", "/api/v1/starts?flow=fresh")
    assert [(s["kind"], s["counts"]["started"], s["runs"]) for s in body["starts"]] == [
        ("trigger", 2, 2)
    ]
    # it cannot be cancelled: it is a record of what happened
    status, body = await wa.api("POST", f"/api/v1/starts/{record['uuid']}/cancel")
    assert status == 409 and body["error"]["code"] == "start_finished"
