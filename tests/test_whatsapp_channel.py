"""The WhatsApp channel end to end, over real HTTP on loopback.

A real Chasqui app (``create_app``: admin API, webhook route, worker loops) runs on a free port,
on the session's Valkey, with its WhatsApp channel on the sandbox (``graph_url = "sandbox"``,
mounted in the same app) or, where a test needs sandbox options the mount does not expose, on a
separate sandbox app. Tests act like people: an operator through the admin API, a WhatsApp user
through the sandbox's ``/_fake/inbound``; they observe the contact's history and runs and what
the sandbox recorded. Background work is awaited with ``/_fake/flush`` and short polls with
deadlines.

Send retries sit on the runtime's timer set at ``now + retry_after`` (1 s for 130429 and
131056, 5 s for a 5xx). Rather than wait for them, :meth:`WA.fire_retries` calls
``store.fire_timers(time.time() + 60)`` once the message shows its retry: that is exactly what
the worker's timer loop does a minute later, so the retry goes through the real send loop.
"""

from __future__ import annotations

import functools
import io
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp.test_utils import TestServer

from channels.whatsapp.sandbox import encode, sign
from channels.whatsapp.sandbox.errors import TITLES
from tests.support.waiting import wait_for
from tests.support.whatsapp import (
    ANA,
    AUTH,
    DISPLAY,
    PNID,
    SECRET,
    VERIFY,
    WA,
    WABA,
    WEBHOOK,
    MakeWA,
)

BRUNO, CARLA = "5511987650456", "51912345678"
BSUID = "PE.40718236650194827731"
LATER = 3600.0  # status delays of a separate sandbox: they only come with /_fake/flush
REPO_FLOWS = Path(__file__).resolve().parent.parent / "flows"

T = TypeVar("T")
AiohttpServer = Callable[..., Awaitable[TestServer]]

NOTIFY = """\
name: Notify
language: es
nodes:
  - id: info
    send_message: {text: "Tu pedido sale hoy"}
    on_failure: failed
    next: wait
  - id: wait
    wait_for_reply: {result: answer}
  - id: failed
    set_result: {name: gate, value: closed}
"""

MENU = """\
name: Menu
language: es
nodes:
  - id: menu
    send_message:
      text: "¿Qué deseas?"
      quick_replies: ["Hacer pedido", "Ver estado", "Ayuda"]
    next: choose
  - id: choose
    wait_for_reply:
      result: choice
      cases:
        - {has_any_word: [menu_pedir], category: Order, next: shipping}
      other: {category: Other, next: menu}
  - id: shipping
    send_message:
      text: "¿Qué envío prefieres?"
      quick_replies: ["Normal", "Express", "Recojo en tienda", "Otro día"]
    next: pick
  - id: pick
    wait_for_reply:
      result: shipping
      cases:
        - {has_any_word: [envio_express], category: Express, next: done}
      other: {category: Other, next: done}
  - id: done
    send_message: {text: "Listo: @results.shipping.category"}
"""

INBOX = """\
name: Inbox
language: es
nodes:
  - id: wait
    wait_for_reply: {result: last}
    next: ack
  - id: ack
    send_message: {text: "ok"}
    next: wait
"""

REMINDER = """\
name: Reminder
language: en
nodes:
  - id: remind
    send_message:
      text: "Reminder"
      template:
        name: appointment_reminder
        header: ["https://demo.chasqui.example/samples/agenda.png"]
        body: {first_name: "@contact.first_name", time: "@fields.time"}
    next: choices
  - id: choices
    send_message:
      text: "Can you come?"
      quick_replies: ["Yes", "No", "Later"]
    next: wait
  - id: wait
    wait_for_reply: {}
"""

TEMPLATE_CHECKS = """\
name: Template checks
language: es
nodes:
  - id: good
    send_message:
      template: {name: welcome, language: en}
    next: unknown
  - id: unknown
    send_message:
      template: {name: no_such_template, body: ["x"]}
    next: wrong_language
  - id: wrong_language
    send_message:
      template: {name: order_delivered, language: pt, body: ["Ana", "A-1"]}
    next: rejected
  - id: rejected
    send_message:
      template: {name: promo_rejected, body: ["Ana", "!"]}
    next: params
  - id: params
    send_message:
      template: {name: order_delivered, body: ["Ana"]}
    next: wait
  - id: wait
    wait_for_reply: {}
"""
# (it opens with the good one: a start whose opening template cannot be sent is refused)

TEMPLATE_NOTICE = """\
name: Template notice
language: es
nodes:
  - id: notice
    send_message:
      template: {name: order_delivered, body: ["Ana", "A-1042"]}
    on_failure: failed
    next: wait
  - id: wait
    wait_for_reply: {}
  - id: failed
    set_result: {name: gate, value: closed}
"""

THREES = """\
name: Three in a row
language: es
nodes:
  - id: a
    send_message: {text: "uno"}
    next: b
  - id: b
    send_message: {text: "dos"}
    next: c
  - id: c
    send_message: {text: "tres"}
    next: w
  - id: w
    wait_for_reply: {}
"""

QUOTE = """\
name: Quote
language: es
nodes:
  - id: wait
    wait_for_reply: {}
    next: answer
  - id: answer
    send_message:
      text: "Sobre esto: https://demo.chasqui.example/pedido"
      preview_url: true
      quote_reply: true
"""

FLOWS = {
    "quote": QUOTE,
    "threes": THREES,
    "order_followup": (REPO_FLOWS / "order_followup.yaml").read_text(encoding="utf-8"),
    "notify": NOTIFY,
    "menu": MENU,
    "inbox": INBOX,
    "reminder": REMINDER,
    "template_checks": TEMPLATE_CHECKS,
    "template_notice": TEMPLATE_NOTICE,
}


@pytest.fixture
def wa_flows() -> dict[str, str]:
    """The flows the ``make_wa`` fixture (tests/conftest.py) serves in these tests."""
    return FLOWS


def graph_body(record: dict[str, Any]) -> dict[str, Any]:
    body = dict(record["body"])
    assert body.pop("messaging_product") == "whatsapp"
    assert body.pop("recipient_type") == "individual"
    return body


# ---------------------------------------------------------------------------------- 1. seed


async def test_order_followup_seed_scenario(wa: WA) -> None:
    assert await wa.sync_templates() == 6
    cid = await wa.contact("Ana Quispe", order_id="A-1042")
    await wa.start(cid, "order_followup")

    (opening,) = await wa.settled(cid, 1)
    (record,) = await wa.sent()
    assert record["http_status"] == 200
    assert graph_body(record) == {
        "to": f"+{ANA}",
        "type": "template",
        "template": {
            "name": "order_delivered",
            "language": {"code": "es"},
            "components": [
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "text": "Ana"},
                        {"type": "text", "text": "A-1042"},
                    ],
                },
                {
                    "type": "button",
                    "sub_type": "quick_reply",
                    "index": "0",
                    "parameters": [{"type": "payload", "payload": "RECEIVED"}],
                },
                {
                    "type": "button",
                    "sub_type": "quick_reply",
                    "index": "1",
                    "parameters": [{"type": "payload", "payload": "NOT_RECEIVED"}],
                },
            ],
        },
    }
    template_wamid = record["response"]["messages"][0]["id"]
    assert opening["external_id"] == template_wamid
    contact = await wa.find(f"whatsapp:+{ANA}")
    assert contact["channel"] == "whatsapp"

    # Ana taps the template's first quick reply
    tap = await wa.inbound(type="button", text="Sí, lo recibí")
    out = await wa.settled(cid, 3)
    thanks, rating = (graph_body(r) for r in (await wa.sent())[1:])
    assert thanks == {
        "to": f"+{ANA}",
        "type": "text",
        "text": {"preview_url": False, "body": "¡Gracias, Ana! 🙌"},
    }
    assert rating["type"] == "interactive"
    assert rating["interactive"] == {
        "type": "list",
        "body": {"text": "¿Cómo calificarías la entrega, del 1 al 5?"},
        "action": {
            "button": "Options",
            "sections": [{"rows": [{"id": str(n), "title": str(n)} for n in range(1, 6)]}],
        },
    }
    run = await wa.run(cid)
    assert run["flow"] == "order_followup" and run["status"] == "waiting"
    assert run["results"]["delivery"]["category"] == "Received"
    assert [step[0] for step in run["path"]] == [
        "channel",
        "open",
        "ask",
        "thanks",
        "ask_rating",
        "rating",
    ]

    # every status the sandbox reports lands on the message it belongs to
    await wa.flush()
    out = await wa.settled(cid, 3, "read")
    history = await wa.messages(cid)
    assert [(m["direction"], m["status"]) for m in history] == [
        ("out", "read"),
        ("in", "handled"),
        ("out", "read"),
        ("out", "read"),
    ]
    for m in out:
        assert int(m["sent_on"]) <= m["delivered_on"] <= m["read_on"]  # Meta: whole seconds
        assert m["external_id"].startswith("wamid.")
    inbound = history[1]
    assert inbound["external_id"] == tap
    assert inbound["msg_type"] == "button"
    assert inbound["text"] == "Sí, lo recibí" and inbound["payload"] == "RECEIVED"
    assert inbound["reply_to"] == template_wamid
    assert inbound["run"] == run["uuid"]
    assert [m.get("text") for m in out[1:]] == [
        "¡Gracias, Ana! 🙌",
        "¿Cómo calificarías la entrega, del 1 al 5?",
    ]


# ---------------------------------------------------------------------------------- 2. inbound


async def test_button_and_list_replies_match_cases_by_their_id(wa: WA) -> None:
    cid = await wa.contact("Ana Quispe")
    await wa.inbound(text="hola")  # opens the window
    await wa.start(cid, "menu")
    await wa.settled(cid, 1)
    (menu,) = await wa.sent()
    assert graph_body(menu)["interactive"]["type"] == "button"
    assert [b["reply"] for b in graph_body(menu)["interactive"]["action"]["buttons"]] == [
        {"id": "Hacer pedido", "title": "Hacer pedido"},
        {"id": "Ver estado", "title": "Ver estado"},
        {"id": "Ayuda", "title": "Ayuda"},
    ]
    # the reply's id, not its title, is what the case looks for
    await wa.inbound(type="interactive", interactive_id="menu_pedir", interactive_title="Pedir")
    await wa.settled(cid, 2)
    shipping = (await wa.sent())[-1]
    assert graph_body(shipping)["interactive"]["type"] == "list"
    await wa.inbound(
        type="interactive",
        interactive_id="envio_express",
        interactive_title="Express",
        interactive_description="Llega mañana",
    )
    out = await wa.settled(cid, 3)
    assert out[-1]["text"] == "Listo: Express"
    run = await wa.run(cid)
    assert run["results"]["choice"]["category"] == "Order"
    assert run["results"]["shipping"]["category"] == "Express"
    replies = (await wa.messages(cid, "in"))[1:]
    assert [(m["msg_type"], m["text"], m["payload"], m["status"]) for m in replies] == [
        ("interactive", "Pedir", "menu_pedir", "handled"),
        ("interactive", "Express", "envio_express", "handled"),
    ]
    assert replies[0]["reply_to"] == menu["response"]["messages"][0]["id"]
    assert replies[1]["reply_to"] == shipping["response"]["messages"][0]["id"]


async def test_every_inbound_type_is_recorded_and_only_replies_are_answered(wa: WA) -> None:
    cid = await wa.contact("Ana Quispe")
    await wa.start(cid, "inbox")
    await wait_for(lambda: wa.runs(cid), "the inbox run")
    ids = [await wa.inbound(text="hola")]
    await wa.settled(cid, 1)
    ok_wamid = (await wa.sent())[-1]["response"]["messages"][0]["id"]
    specs: list[dict[str, Any]] = [
        {"type": "text", "text": "¿y esto?", "context_id": ok_wamid},
        {"type": "image", "caption": "Este modelo", "mime_type": "image/png"},
        {"type": "audio", "voice": True},
        {"type": "video", "caption": "mira"},
        {"type": "document", "filename": "boleta.pdf", "caption": "boleta"},
        {"type": "sticker", "animated": True},
        {
            "type": "location",
            "latitude": -13.5226,
            "longitude": -71.9673,
            "location_name": "Plaza de Armas",
            "address": "Cusco 08002",
        },
        {
            "type": "contacts",
            "contacts": [{"name": {"formatted_name": "Rosa Mamani", "first_name": "Rosa"}}],
        },
        {"type": "reaction", "message_id": ok_wamid, "emoji": "👍"},
        {"type": "unsupported"},
    ]
    for spec in specs:
        ids.append(await wa.inbound(**spec))
    answered = 1 + len(specs) - 2  # "hola" and the rest but the reaction and the unsupported

    async def all_in() -> list[dict[str, Any]]:
        got = await wa.messages(cid, "in")
        return got if len(got) == len(ids) else []

    inbound = await wait_for(all_in, "every inbound message")
    await wa.settled(cid, answered)
    assert [m["external_id"] for m in inbound] == ids
    assert [m["msg_type"] for m in inbound] == ["text"] + [s["type"] for s in specs]
    assert [m["status"] for m in inbound] == ["handled"] * answered + ["received"] * 2
    by_type = {m["msg_type"]: m for m in inbound[1:]}
    assert by_type["text"]["reply_to"] == ok_wamid
    image = by_type["image"]
    assert image["text"] == "Este modelo" and image["media"]["mime_type"] == "image/png"
    assert image["media"]["id"].isdigit() and image["media"]["sha256"]
    assert by_type["audio"]["media"]["voice"] is True
    assert by_type["audio"]["media"]["mime_type"] == "audio/ogg; codecs=opus"
    assert by_type["video"]["media"]["mime_type"] == "video/mp4"
    assert by_type["document"]["media"]["filename"] == "boleta.pdf"
    assert by_type["sticker"]["media"]["animated"] is True
    assert by_type["sticker"]["media"]["mime_type"] == "image/webp"
    assert by_type["location"]["location"] == {
        "latitude": -13.5226,
        "longitude": -71.9673,
        "name": "Plaza de Armas",
        "address": "Cusco 08002",
    }
    assert by_type["location"]["text"] == "Plaza de Armas, Cusco 08002"
    assert by_type["contacts"]["contacts"][0]["name"]["formatted_name"] == "Rosa Mamani"
    assert by_type["reaction"]["reaction"] == {"message_id": ok_wamid, "emoji": "👍"}
    assert by_type["unsupported"]["run"] is None
    run = await wa.run(cid)
    assert run["results"]["last"]["value"] == "Rosa Mamani"  # the last answered message


async def test_batched_webhook_bsuid_only_sender_and_profile_names(wa: WA) -> None:
    # several entries, changes and messages in one POST, signed as Meta signs
    def change(wa_id: str, name: str, texts: list[str]) -> dict[str, Any]:
        return {
            "field": "messages",
            "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": DISPLAY, "phone_number_id": PNID},
                "contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
                "messages": [
                    {
                        "from": wa_id,
                        "id": f"wamid.BATCH.{wa_id}.{i}",
                        "timestamp": str(int(time.time())),
                        "type": "text",
                        "text": {"body": text},
                    }
                    for i, text in enumerate(texts)
                ],
            },
        }

    payload = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": WABA,
                "changes": [change(ANA, "Ana Quispe", ["uno"]), change(BRUNO, "Bruno", ["dos"])],
            },
            {"id": WABA, "changes": [change(CARLA, "Carla Rojas", ["tres", "cuatro"])]},
        ],
    }
    assert await wa.post_webhook(encode(payload)) == (200, "ok")

    async def texts_of(phone: str, count: int) -> list[str]:
        async def check() -> list[str]:
            status, body = await wa.api("GET", f"/api/v1/contacts?urn=whatsapp:%2B{phone}")
            if status != 200 or not body["contacts"]:
                return []
            got = [m["text"] for m in await wa.messages(body["contacts"][0]["uuid"], "in")]
            return got if len(got) == count else []

        return await wait_for(check, f"messages of {phone}")

    assert await texts_of(ANA, 1) == ["uno"]
    assert await texts_of(BRUNO, 1) == ["dos"]
    assert await texts_of(CARLA, 2) == ["tres", "cuatro"]
    assert (await wa.find(f"whatsapp:+{CARLA}"))["name"] == "Carla Rojas"

    # a username user: the webhook carries only the BSUID
    await wa.fake("POST", "webhook-faults", {"bsuid_only": 1})
    wamid = await wa.inbound(user_id=BSUID, name="Ana Q.", text="hola")
    sent_payload = (await wa.fake("GET", "webhooks?kind=messages"))["data"][-1]["payload"]
    value = sent_payload["entry"][0]["changes"][0]["value"]
    assert "from" not in value["messages"][0] and "wa_id" not in value["contacts"][0]

    async def bsuid_contact() -> dict[str, Any] | None:
        status, body = await wa.api("GET", f"/api/v1/contacts?urn=whatsapp:bsuid:{BSUID}")
        return body["contacts"][0] if status == 200 and body["contacts"] else None

    contact = await wait_for(bsuid_contact, "the BSUID contact")
    assert contact["urns"] == [f"whatsapp:bsuid:{BSUID}"]
    assert contact["name"] == "Ana Q."
    (message,) = await wait_for(lambda: wa.messages(contact["uuid"], "in"), "its message")
    assert message["external_id"] == wamid and message["urn"] == f"whatsapp:bsuid:{BSUID}"


# ---------------------------------------------------------------------------------- 3. security


async def test_webhook_verification_get(wa: WA) -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": VERIFY, "hub.challenge": "1158201444"}
    async with wa.http.get(wa.base + WEBHOOK, params=query) as r:
        assert (r.status, await r.text()) == (200, "1158201444")
        assert r.content_type == "text/plain"
    async with wa.http.get(wa.base + WEBHOOK, params={**query, "hub.verify_token": "no"}) as r:
        assert r.status == 403
        assert "1158201444" not in await r.text()
    assert (await wa.fake("POST", "verify", {}))["verified"] is True
    refused = await wa.fake("POST", "verify", {"verify_token": "wrong"})
    assert refused["verified"] is False and refused["status"] == 403


async def test_webhook_posts_refused_or_salvaged_never_a_500(wa: WA) -> None:
    good = {
        "object": "whatsapp_business_account",
        "entry": [
            "junk entry",
            {"id": WABA, "changes": "not a list"},
            {
                "id": WABA,
                "changes": [
                    {"field": "account_update", "value": {"x": 1}},
                    {"field": "messages", "value": "junk"},
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {"phone_number_id": PNID},
                            "contacts": [{"profile": {"name": "Ana Quispe"}, "wa_id": ANA}],
                            "messages": [
                                {"from": ANA, "id": "wamid.NO_TYPE", "timestamp": "1"},
                                42,
                                {
                                    "from": ANA,
                                    "id": "wamid.GOOD",
                                    "timestamp": str(int(time.time())),
                                    "type": "text",
                                    "text": {"body": "sobreviví"},
                                },
                            ],
                            "statuses": [{"id": "wamid.UNKNOWN", "status": "read"}],
                        },
                    },
                ],
            },
        ],
    }
    good["pad"] = "x" * 600_000  # big enough to arrive in several reads, yet allowed
    raw = encode(good)
    assert (await wa.post_webhook(raw, signature=None))[0] == 401
    assert (await wa.post_webhook(raw, signature="sha256=" + "0" * 64))[0] == 401
    assert (await wa.post_webhook(raw, signature=sign(raw + b" ", SECRET)))[0] == 401
    assert (await wa.post_webhook(b"{not json", signature="sign"))[0] == 400
    huge = b'{"object": "whatsapp_business_account", "pad": "' + b"x" * (1024 * 1024) + b'"}'
    assert (await wa.post_webhook(io.BytesIO(huge), signature=sign(huge, SECRET)))[0] == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the size is still capped
        for _ in range(17):
            yield b" " * 65536

    assert (await wa.post_webhook(chunks(), signature=sign(b"", SECRET)))[0] == 413
    for odd in (b"[]", b"null", b'"text"', b'{"object": "page", "entry": []}'):
        assert (await wa.post_webhook(odd))[0] == 200, odd
    assert await wa.post_webhook(raw) == (200, "ok")

    async def salvaged() -> list[dict[str, Any]]:
        status, body = await wa.api("GET", f"/api/v1/contacts?urn=whatsapp:%2B{ANA}")
        found = body["contacts"] if status == 200 else []
        return await wa.messages(found[0]["uuid"], "in") if found else []

    (message,) = await wait_for(salvaged, "the good message of the junk batch")
    assert message["external_id"] == "wamid.GOOD" and message["text"] == "sobreviví"


async def test_webhook_refusals_are_json_errors_with_a_code(wa: WA) -> None:
    raw = encode({"object": "whatsapp_business_account", "entry": []})
    huge = b'{"pad": "' + b"x" * (1024 * 1024) + b'"}'
    refusals = [
        (await wa.post_webhook(raw, signature=None), 401, "bad_signature"),
        (await wa.post_webhook(b"{not json"), 400, "bad_request"),
        (
            await wa.post_webhook(io.BytesIO(huge), signature=sign(huge, SECRET)),
            413,
            "body_too_large",
        ),
    ]
    async with wa.http.get(wa.base + WEBHOOK, params={"hub.mode": "subscribe"}) as r:
        refusals.append(((r.status, await r.text()), 403, "forbidden"))
    async with wa.http.post(wa.base + "/webhooks/whatsapp/nope", data=raw) as r:
        refusals.append(((r.status, await r.text()), 404, "not_found"))
    async with wa.http.post(wa.base + "/webhooks/console/whatsapp", data=raw) as r:
        refusals.append(((r.status, await r.text()), 404, "not_found"))
    for (status, text), expected, code in refusals:
        error = json.loads(text)["error"]
        assert (status, error["code"]) == (expected, code), text
        assert isinstance(error["message"], str) and error["message"]


async def test_duplicate_deliveries_are_one_message(wa: WA) -> None:
    await wa.fake("POST", "webhook-faults", {"duplicate": 1})
    wamid = await wa.inbound(text="hola")
    deliveries = (await wa.fake("GET", "webhooks?kind=messages"))["data"]
    assert [d["status"] for d in deliveries] == [200, 200]
    assert deliveries[0]["body"] == deliveries[1]["body"]
    # Meta's own redelivery: the same signed bytes once more
    assert (await wa.post_webhook(deliveries[0]["body"].encode()))[0] == 200
    # a later message is applied after anything queued before it (per-contact order)
    last = await wa.inbound(text="fin")
    contact = await wa.find(f"whatsapp:+{ANA}")

    async def check() -> list[dict[str, Any]]:
        got = await wa.messages(contact["uuid"], "in")
        return got if got and got[-1]["external_id"] == last else []

    inbound = await wait_for(check, "the last message")
    assert [m["external_id"] for m in inbound] == [wamid, last]


async def test_statuses_out_of_order_and_a_late_failure(make_wa: MakeWA) -> None:
    wa = await make_wa({"status_delays": (LATER, LATER + 1, LATER + 2)})
    cid = await wa.contact("Ana Quispe")
    await wa.inbound(text="hola")
    await wa.fake("POST", "webhook-faults", {"read_before_sent": 1})
    await wa.start(cid, "notify")
    (message,) = await wa.settled(cid, 1)
    assert message["status"] == "sent" and "delivered_on" not in message
    await wa.flush()
    order = [
        d["summary"][0].split(":")[1]
        for d in (await wa.fake("GET", "webhooks?kind=statuses"))["data"]
    ]
    assert order == ["read", "delivered", "sent"]
    (message,) = await wa.settled(cid, 1, "read")
    assert message["status"] == "read"
    assert {"sent_on", "delivered_on", "read_on"} <= set(message)

    # a failed status after delivery is stale: ignored, and the flow does not take on_failure
    failed = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": WABA,
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {"phone_number_id": PNID},
                            "statuses": [
                                {
                                    "id": message["external_id"],
                                    "status": "failed",
                                    "timestamp": str(int(time.time())),
                                    "recipient_id": ANA,
                                    "errors": [{"code": 131026, "title": "Message undeliverable"}],
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }
    assert (await wa.post_webhook(encode(failed)))[0] == 200  # applied before the answer
    (message,) = await wa.messages(cid, "out")
    assert message["status"] == "read" and "error" not in message
    # a fail event, had one been queued, would be applied before this reply
    await wa.inbound(text="listo")

    async def ended() -> dict[str, Any] | None:
        run = await wa.run(cid)
        return run if run["status"] != "waiting" else None

    run = await wait_for(ended, "the run to end")
    assert run["status"] == "completed"
    assert [step[0] for step in run["path"]] == ["info", "wait"]
    assert run["results"]["answer"]["value"] == "listo" and "gate" not in run["results"]


# ---------------------------------------------------------------------------------- 4. outbound


async def test_named_template_with_image_header_and_reply_buttons(wa: WA) -> None:
    await wa.sync_templates()
    cid = await wa.contact("Ana Quispe", time="Thursday 3 pm")
    await wa.inbound(text="hi")
    await wa.start(cid, "reminder")
    await wa.settled(cid, 2)
    template, buttons = (graph_body(r) for r in await wa.sent())
    assert template["template"] == {
        "name": "appointment_reminder",
        "language": {"code": "en"},
        "components": [
            {
                "type": "header",
                "parameters": [
                    {
                        "type": "image",
                        "image": {"link": "https://demo.chasqui.example/samples/agenda.png"},
                    }
                ],
            },
            {
                "type": "body",
                "parameters": [
                    {"type": "text", "parameter_name": "first_name", "text": "Ana"},
                    {"type": "text", "parameter_name": "time", "text": "Thursday 3 pm"},
                ],
            },
        ],
    }
    assert buttons["interactive"] == {
        "type": "button",
        "body": {"text": "Can you come?"},
        "action": {
            "buttons": [
                {"type": "reply", "reply": {"id": t, "title": t}} for t in ("Yes", "No", "Later")
            ]
        },
    }
    assert "context" not in buttons  # flows set no reply context (build_send supports one)


async def test_free_text_outside_the_window_never_reaches_the_api(wa: WA) -> None:
    cid = await wa.contact("Ana Quispe")  # never wrote: no window
    await wa.start(cid, "notify")

    async def failed() -> list[dict[str, Any]]:
        out = await wa.messages(cid, "out")
        return out if out and out[0]["status"] == "failed" else []

    (message,) = await wait_for(failed, "the gated message")
    assert message["error"] == {"code": "outside_24h_window"}
    run = await wa.run(cid)
    assert run["results"]["gate"]["value"] == "closed"
    assert run["errors"][0]["code"] == "outside_24h_window"
    await wa.flush()
    assert await wa.sent() == []


async def test_async_131047_takes_on_failure(wa: WA) -> None:
    cid = await wa.contact("Ana Quispe")
    await wa.inbound(text="hola")  # our gate sees an open window; Meta does not
    await wa.fake("POST", "errors", {"match": {"to": ANA}, "code": 131047, "mode": "async"})
    await wa.start(cid, "notify")
    await wa.settled(cid, 1)
    (record,) = await wa.sent()
    assert record["http_status"] == 200  # accepted, then failed by a status webhook
    await wa.flush()

    async def took_failure() -> dict[str, Any] | None:
        run = await wa.run(cid)
        return run if "gate" in run["results"] else None

    run = await wait_for(took_failure, "on_failure")
    assert [step[0] for step in run["path"]] == ["info", "wait", "failed"]
    (message,) = await wa.messages(cid, "out")
    assert message["status"] == "failed"
    assert message["error"]["code"] == "outside_24h_window"
    assert message["error"]["whatsapp_code"] == 131047
    assert message["error"]["hint"] == "needs_template"
    # Meta says the window is closed: we believe it, so the next free text fails locally
    contact = (await wa.api("GET", f"/api/v1/contacts/{cid}"))[1]
    assert "whatsapp" not in (contact.get("last_inbound") or {})


# ---------------------------------------------------------------------------------- 5. templates


async def test_template_checks_before_sending(wa: WA) -> None:
    await wa.sync_templates()
    cid = await wa.contact("Ana Quispe")
    await wa.start(cid, "template_checks")
    out = await wa.settled(cid, 5)
    assert [
        (m["node"], m["status"], m["error"]["code"] if "error" in m else None) for m in out
    ] == [
        ("good", "sent", None),
        ("unknown", "failed", "template_not_found"),
        ("wrong_language", "failed", "template_not_found"),
        ("rejected", "failed", "template_not_approved"),
        ("params", "failed", "template_params_mismatch"),
    ]
    assert out[2]["error"]["details"]["available_languages"] == ["es", "pt_BR"]
    assert out[4]["error"]["details"] == {"component": "body", "expected": 2, "got": 1}
    (record,) = await wa.sent()  # only the good one reached the Graph API
    assert record["body"]["template"]["name"] == "welcome"


# ---------------------------------------------------------------------------------- 6. errors


async def test_throughput_limit_and_5xx_are_retried_until_sent(wa: WA) -> None:
    ana, bruno = await wa.contact("Ana Quispe"), await wa.contact("Bruno Costa", BRUNO)
    await wa.inbound(text="hola")
    await wa.inbound(**{"from": BRUNO}, text="oi")
    await wa.fake(
        "POST",
        "errors",
        {
            "rules": [
                {"match": {"to": ANA}, "code": 130429, "times": 2},
                {"match": {"to": BRUNO}, "code": 131000, "http_status": 500, "times": 1},
            ]
        },
    )
    await wa.start(ana, "notify")
    await wa.start(bruno, "notify")
    await wa.fire_retries(ana, 1)
    await wa.fire_retries(bruno, 1)
    await wa.fire_retries(ana, 2)
    (to_ana,) = await wa.settled(ana, 1)
    (to_bruno,) = await wa.settled(bruno, 1)
    assert (to_ana["status"], to_ana["attempts"]) == ("sent", 3)
    assert (to_bruno["status"], to_bruno["attempts"]) == ("sent", 2)
    assert [r["http_status"] for r in await wa.sent(f"?to={ANA}")] == [400, 400, 200]
    assert [r["http_status"] for r in await wa.sent(f"?to={BRUNO}")] == [500, 200]
    assert to_ana["last_error"]["code"] == "throughput_limited"
    assert to_bruno["last_error"]["code"] == "unknown_error"


async def test_pair_rate_limit_delays_that_recipient_only(wa: WA) -> None:
    ana, bruno = await wa.contact("Ana Quispe"), await wa.contact("Bruno Costa", BRUNO)
    await wa.inbound(text="hola")
    await wa.inbound(**{"from": BRUNO}, text="oi")
    await wa.fake("POST", "errors", {"match": {"to": ANA}, "code": 131056, "times": 2})
    await wa.start(ana, "notify")
    await wa.start(bruno, "notify")
    (to_bruno,) = await wa.settled(bruno, 1)
    assert (to_bruno["status"], to_bruno["attempts"]) == ("sent", 1)

    async def held(attempts: int) -> dict[str, Any] | None:
        (message,) = await wa.messages(ana, "out") or [{}]
        return message if message.get("attempts") == attempts else None

    delays = []
    for attempt in (1, 2):
        to_ana = await wait_for(functools.partial(held, attempt), f"Ana's retry {attempt}")
        assert to_ana["status"] == "queued"
        assert to_ana["last_error"]["code"] == "pair_rate_limited"
        assert to_ana["last_error"]["whatsapp_code"] == 131056
        tried_at = (await wa.sent(f"?to={ANA}"))[-1]["at"]
        delays.append(to_ana["retry_at"] - tried_at)
        # an early signal does not make it go before its time (the worker's timer loop will)
        await wa.runtime.store.fire_timers(time.time() + 60)
        assert len(await wa.sent(f"?to={ANA}")) == attempt
    (to_ana,) = await wait_for(
        lambda: wa.settled(ana, 1), "the third attempt, after 1 s and 4 s", timeout=10
    )
    assert (to_ana["status"], to_ana["attempts"]) == ("sent", 3)
    assert [r["http_status"] for r in await wa.sent(f"?to={ANA}")] == [400, 400, 200]
    assert 0.5 < delays[0] < 2 and 3 < delays[1] < 5  # 4^n seconds: 1, then 4


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (131026, "undeliverable"),
        (368, "account_restricted"),
        (132000, "template_params_mismatch"),
        (132001, "template_not_found"),
    ],
)
async def test_permanent_errors_fail_at_once_with_metas_code(
    wa: WA, code: int, reason: str
) -> None:
    await wa.sync_templates()
    cid = await wa.contact("Ana Quispe")
    await wa.fake("POST", "errors", {"match": {"to": ANA}, "code": code})
    await wa.start(cid, "template_notice")
    (message,) = await wa.settled(cid, 1)
    assert message["status"] == "failed" and message["attempts"] == 1
    assert message["error"]["code"] == reason
    assert message["error"]["whatsapp_code"] == code
    assert message["error"]["title"] == TITLES[code]
    assert len(await wa.sent()) == 1

    async def took_failure() -> dict[str, Any] | None:
        run = await wa.run(cid)
        return run if "gate" in run["results"] else None

    await wait_for(took_failure, "on_failure")


async def test_bad_token_holds_the_message_and_marks_the_channel_unhealthy(wa: WA) -> None:
    ana, bruno = await wa.contact("Ana Quispe"), await wa.contact("Bruno Costa", BRUNO)
    await wa.inbound(text="hola")
    await wa.inbound(**{"from": BRUNO}, text="oi")
    await wa.fake("POST", "errors", {"match": {"to": ANA}, "code": 190, "http_status": 401})
    await wa.start(ana, "notify")

    async def held() -> dict[str, Any] | None:
        out = await wa.messages(ana, "out")
        return out[0] if out and out[0].get("attempts") == 1 else None

    # a token is fixed in minutes: the message waits (5 min) instead of failing for good
    message = await wait_for(held, "the held message")
    assert message["status"] == "queued" and message["retry_at"] - time.time() > 200
    assert message["last_error"]["code"] == "access_token_invalid"
    assert message["last_error"]["kind"] == "credentials"
    async with wa.http.get(wa.base + "/healthz") as r:
        health = await r.json()
        assert r.status == 503
    assert health["status"] == "unhealthy"
    assert health["channels"]["whatsapp"]["status"] == "unhealthy"
    assert "access_token_invalid" in health["channels"]["whatsapp"]["reason"]
    # the next accepted send clears it
    await wa.start(bruno, "notify")
    await wa.settled(bruno, 1)
    async with wa.http.get(wa.base + "/healthz") as r:
        assert r.status == 200


# ---------------------------------------------------------------------------------- 7. sync


async def test_template_sync_reads_every_page_and_filters(wa: WA) -> None:
    seed = [
        {
            "name": f"bulk_{i:03d}",
            "language": "es" if i % 2 else "en",
            "status": "APPROVED" if i % 3 else "PENDING",
            "category": "UTILITY",
            "components": [{"type": "BODY", "text": f"Mensaje {i}"}],
        }
        for i in range(130)
    ]
    await wa.fake("POST", "templates", {"seed": seed})
    assert await wa.sync_templates() == 136  # the 6 demo templates + 130: two pages of 100
    status, body = await wa.api("GET", "/api/v1/templates?status=APPROVED&language=es")
    assert status == 200
    names = sorted(t["name"] for t in body["templates"])
    expected = sorted(
        ["order_delivered"]
        + [t["name"] for t in seed if t["language"] == "es" and t["status"] == "APPROVED"]
    )
    assert names == expected
    assert all(t["channel"] == "whatsapp" for t in body["templates"])
    listed: list[str] = []  # paged like every list: limit, cursor in; next out
    cursor: str | None = ""
    while cursor is not None:
        status, body = await wa.api("GET", f"/api/v1/templates?limit=100&cursor={cursor}")
        assert status == 200 and len(body["templates"]) <= 100
        listed += [f"{t['name']}:{t['language']}" for t in body["templates"]]
        cursor = body["next"]
    assert len(listed) == len(set(listed)) == 136
    assert listed == sorted(listed, key=lambda n: n.split(":"))


async def test_paused_template_webhook_updates_the_cache_and_blocks_sends(wa: WA) -> None:
    # the channel's own first sync (a second after start), so that no sync comes in between
    async def synced() -> int:
        return len((await wa.api("GET", "/api/v1/templates"))[1]["templates"])

    assert await wait_for(synced, "the startup sync") == 6
    answer = await wa.fake(
        "POST",
        "templates",
        {
            "set_status": {
                "name": "order_delivered",
                "language": "es",
                "status": "PAUSED",
                "reason": "LOW_QUALITY",
            }
        },
    )
    assert [d["status"] for d in answer["deliveries"]] == [200]
    _, body = await wa.api("GET", "/api/v1/templates?name=order_delivered&language=es")
    (stored,) = body["templates"]
    assert stored["status"] == "PAUSED"
    assert stored["rejected_reason"] == "LOW_QUALITY"  # from the webhook, not from a re-sync
    cid = await wa.contact("Ana Quispe")
    # the paused template blocks the start itself: it opens the flow (docs/starts.md)
    status, err = await wa.api("POST", f"/api/v1/contacts/{cid}/start", {"flow": "template_notice"})
    assert status == 422 and err["error"]["code"] == "template_not_approved"
    assert err["error"]["details"]["problem"] == "template_paused"
    assert await wa.messages(cid) == []
    assert await wa.sent() == []


async def test_statuses_that_beat_our_bookkeeping_are_kept(make_wa: MakeWA) -> None:
    # Statuses at once: the first message's come while its two followers are being sent,
    # before the worker records the contact's sends. They must not be dropped as unknown.
    wa = await make_wa({"status_delays": (0.0, 0.0, 0.0)})
    cid = await wa.contact("Ana Quispe")
    await wa.inbound(text="hola")
    await wa.start(cid, "threes")
    await wa.settled(cid, 3)
    await wa.flush()
    out = await wa.settled(cid, 3, "read")
    wamids = [r["response"]["messages"][0]["id"] for r in await wa.sent()]
    assert [(m["text"], m["external_id"], m["attempts"]) for m in out] == [
        ("uno", wamids[0], 1),
        ("dos", wamids[1], 1),
        ("tres", wamids[2], 1),
    ]


# ------------------------------------------------------------------- media on demand, blue ticks


async def test_inbound_media_is_fetched_on_demand(wa: WA) -> None:
    await wa.contact("Ana Quispe")
    await wa.inbound(type="image", mime_type="image/png", media_content="PNG-BYTES-1")
    cid = (await wa.find(f"whatsapp:+{ANA}"))["uuid"]

    async def media_id() -> str | None:
        inbound = await wa.messages(cid, "in")
        return inbound[0]["media"]["id"] if inbound else None

    mid = await wait_for(media_id, "the inbound image")
    async with wa.http.get(
        f"{wa.base}/api/v1/channels/whatsapp/media/{mid}", headers=AUTH
    ) as response:
        assert response.status == 200
        assert response.content_type == "image/png"
        assert await response.read() == b"PNG-BYTES-1"
    status, body = await wa.api("GET", "/api/v1/channels/whatsapp/media/999999")
    assert status == 404 and body["error"]["code"] == "not_found"
    async with wa.http.get(f"{wa.base}/api/v1/channels/whatsapp/media/{mid}") as response:
        assert response.status == 401  # behind the admin token like the rest of the API


async def test_mark_read_sends_blue_ticks_once_queued(make_wa: MakeWA) -> None:
    wa = await make_wa(mark_read=True)
    await wa.contact("Ana Quispe")
    wamid = await wa.inbound(text="hola")

    async def marked() -> list[dict[str, Any]]:
        return [r for r in await wa.sent() if r["body"].get("status") == "read"]

    (record,) = await wait_for(marked, "a mark-as-read")
    assert record["body"]["message_id"] == wamid and record["http_status"] == 200


async def test_reply_quotes_the_message_it_answers_with_a_link_preview(wa: WA) -> None:
    cid = await wa.contact("Ana Quispe")
    await wa.start(cid, "quote")
    wamid = await wa.inbound(text="¿y mi pedido?")
    await wa.settled(cid, 1)
    (record,) = await wa.sent()
    body = graph_body(record)
    assert body["context"] == {"message_id": wamid}
    assert body["text"] == {
        "preview_url": True,
        "body": "Sobre esto: https://demo.chasqui.example/pedido",
    }


async def test_a_template_send_waits_for_the_first_template_sync(wa: WA) -> None:
    """A start made in the first second of a fresh server (nothing synced yet, nothing kept
    from an earlier run) is held, then sent once the templates are known: not failed as
    ``template_not_found``."""
    channel = wa.runtime.channels["whatsapp"]
    await wa.runtime.store.save_templates("whatsapp", [])
    fresh = type(channel)("whatsapp", channel.config, channel.host)  # a new process's channel
    fresh.base_url = channel.base_url
    await fresh.start()
    assert fresh._sync_task is not None
    fresh._sync_task.cancel()  # its first sync comes when this test says
    wa.runtime.channels["whatsapp"] = fresh
    try:
        cid = await wa.contact("Ana Quispe")
        await wa.start(cid, "template_notice")

        async def held() -> bool:
            out = await wa.messages(cid, "out")
            return bool(out) and "retry_at" in out[0]

        await wait_for(held, "the template send held")
        (message,) = await wa.messages(cid, "out")
        assert message["status"] == "queued"
        assert message["last_error"]["code"] == "templates_not_synced"
        await fresh.sync_templates()
        await wa.fire_retries(cid, 1)
        (sent,) = await wa.settled(cid, 1)
        assert (sent["status"], sent["attempts"]) == ("sent", 2)
    finally:
        wa.runtime.channels["whatsapp"] = channel
        await fresh.close()
