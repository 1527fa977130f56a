"""The WhatsApp sandbox over real HTTP on loopback, with a tiny receiver playing Chasqui.

Status delays, template reviews and redeliveries are set far in the future, and the tests
drive them with ``POST /_fake/flush`` (every pending webhook now, in due order): no sleeps. One
test lets the background sender run on its own, with short delays, to prove it does.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from channels.whatsapp.sandbox import SandboxConfig, SandboxNumber, create_sandbox_app, encode, sign
from tests.support.sandbox import (
    ADMIN,
    ADMIN_AUTH,
    ANA,
    AUTH,
    DISPLAY,
    LATER,
    PNID,
    SECRET,
    TOKEN,
    WABA,
    Receiver,
    V,
)

Client = TestClient[web.Request, web.Application]
AiohttpServer = Callable[[web.Application], Awaitable[TestServer]]
AiohttpClient = Callable[[web.Application], Awaitable[Client]]


class Sandbox:
    def __init__(self, client: Client, receiver: Receiver) -> None:
        self.client, self.receiver = client, receiver

    async def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        default = ADMIN_AUTH if path.startswith("/_fake/") else AUTH
        kwargs: dict[str, Any] = {"headers": default if headers is None else headers}
        if body is not None:
            kwargs["json"] = body
        async with self.client.request(method, path, **kwargs) as resp:
            return resp.status, await resp.json()

    async def send(self, body: dict[str, Any], **kwargs: Any) -> tuple[int, Any]:
        return await self.call("POST", f"{V}/{PNID}/messages", body, **kwargs)

    async def inbound(self, **spec: Any) -> dict[str, Any]:
        status, answer = await self.call("POST", "/_fake/inbound", {"from": ANA, **spec})
        assert status == 200, answer
        return dict(answer)

    async def flush(self) -> int:
        status, answer = await self.call("POST", "/_fake/flush")
        assert status == 200
        return int(answer["posted"])


Factory = Callable[..., Awaitable[Sandbox]]


@pytest.fixture
async def make_sandbox(aiohttp_server: AiohttpServer, aiohttp_client: AiohttpClient) -> Factory:
    async def make(**overrides: Any) -> Sandbox:
        receiver = Receiver()
        server = await aiohttp_server(receiver.app)
        values: dict[str, Any] = {
            "app_secret": SECRET,
            "verify_token": "chasqui-verify-7f3a",
            "access_tokens": {TOKEN},
            "waba_id": WABA,
            "numbers": [
                SandboxNumber(PNID, DISPLAY, str(server.make_url("/webhooks/whatsapp/wa")))
            ],
            "admin_token": ADMIN,
            "status_delays": (LATER, LATER + 1, LATER + 2),
            "review_delay": LATER,
            "retry_delays": (LATER,),
        }
        values.update(overrides)
        client = await aiohttp_client(create_sandbox_app(SandboxConfig(**values)))
        return Sandbox(client, receiver)

    return make


@pytest.fixture
async def sandbox(make_sandbox: Factory) -> Sandbox:
    return await make_sandbox()


def text(to: str = ANA, body: str = "Hola", **extra: Any) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "to": f"+{to}",
        "type": "text",
        "text": {"body": body},
        **extra,
    }


def template(name: str, code: str, components: list[Any] | None = None) -> dict[str, Any]:
    tpl: dict[str, Any] = {"name": name, "language": {"code": code}}
    if components is not None:
        tpl["components"] = components
    return {"messaging_product": "whatsapp", "to": f"+{ANA}", "type": "template", "template": tpl}


def body_params(*values: str) -> dict[str, Any]:
    return {"type": "body", "parameters": [{"type": "text", "text": v} for v in values]}


def buttons(n: int) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "to": ANA,
        "type": "interactive",
        "interactive": {
            "type": "button",
            "body": {"text": "¿Qué te gustaría hacer?"},
            "action": {
                "buttons": [
                    {"type": "reply", "reply": {"id": f"b{i}", "title": f"Opción {i}"}}
                    for i in range(n)
                ]
            },
        },
    }


LIST = {
    "messaging_product": "whatsapp",
    "to": ANA,
    "type": "interactive",
    "interactive": {
        "type": "list",
        "body": {"text": "Elige cómo quieres recibir tu pedido."},
        "action": {
            "button": "Ver opciones",
            "sections": [
                {
                    "title": "Rápido",
                    "rows": [
                        {"id": "envio_express", "title": "Express", "description": "Llega mañana"},
                        {"id": "envio_moto", "title": "Moto"},
                    ],
                }
            ],
        },
    },
}


def assert_meta_error(status: int, answer: Any, code: int, http_status: int = 400) -> None:
    assert status == http_status, answer
    error = answer["error"]
    assert error["code"] == code
    assert error["type"] == "OAuthException"
    assert error["fbtrace_id"]
    if code != 190:
        assert error["message"].startswith(f"(#{code}) ")
        assert error["error_data"]["messaging_product"] == "whatsapp"
        assert error["error_data"]["details"]


# -- signatures --------------------------------------------------------------------------------

VECTOR = (
    b'{"object":"whatsapp_business_account","entry":[{"id":"230918475512034","changes":[{"value":'
    b'{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550142200",'
    b'"phone_number_id":"318207746650091"},"contacts":[{"profile":{"name":"Ana Quispe"},'
    b'"wa_id":"51987650123"}],"messages":[{"from":"51987650123","id":"wamid.TEST_IN_0001",'
    b'"timestamp":"1767855600","type":"text","text":{"body":"\\u00bfHay men\\u00fa? 1\\/2"}}]},'
    b'"field":"messages"}]}]}'
)


def test_signature_test_vector_of_the_reference() -> None:
    obj = json.loads(VECTOR)
    assert obj["entry"][0]["changes"][0]["value"]["messages"][0]["text"]["body"] == "¿Hay menú? 1/2"
    raw = encode(obj)
    assert raw == VECTOR and len(raw) == 447
    assert sign(raw, SECRET) == (
        "sha256=ded53d61f7ff973321e1ee986e41f488014e4c29172f0c0ca13e96920d59aeed"
    )
    reserialised = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
    assert sign(reserialised, SECRET).endswith(
        "cc5eb17a978f157e84ab4fc4153ff6ac85e18591f8762111409079a3230338cd"
    )


async def test_webhooks_are_signed_over_meta_escaped_bytes(sandbox: Sandbox) -> None:
    await sandbox.inbound(text="¿Hay menú? 1/2 👍", name="Ana Quispe")
    raw = sandbox.receiver.raw[0]
    assert b"\\u00bfHay men\\u00fa? 1\\/2 \\ud83d\\udc4d" in raw
    expected = hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    assert sandbox.receiver.signatures[0] == f"sha256={expected}"


# -- auth and routing ------------------------------------------------------------------------


async def test_graph_routes_need_a_known_bearer_token(sandbox: Sandbox) -> None:
    assert_meta_error(*await sandbox.send(text(), headers={}), 190, http_status=401)
    bad = {"Authorization": "Bearer nope"}
    assert_meta_error(*await sandbox.send(text(), headers=bad), 190, http_status=401)
    status, _ = await sandbox.call("GET", f"{V}/{WABA}/message_templates", headers=bad)
    assert status == 401
    # Any version prefix; unknown numbers and WABAs are code 100.
    status, _ = await sandbox.call("GET", f"/v99.1/{WABA}/message_templates")
    assert status == 200
    status, answer = await sandbox.call("POST", f"{V}/999/messages", text())
    assert_meta_error(status, answer, 100)
    status, answer = await sandbox.call("GET", f"{V}/999/message_templates")
    assert_meta_error(status, answer, 100)
    status, answer = await sandbox.call("GET", f"{V}/{PNID}?fields=throughput")
    assert (status, answer) == (200, {"throughput": {"level": "STANDARD"}, "id": PNID})


async def test_verification_get_and_mounting_under_a_prefix(
    sandbox: Sandbox, aiohttp_client: AiohttpClient
) -> None:
    assert (await sandbox.call("POST", "/_fake/verify"))[1]["verified"] is True
    _, answer = await sandbox.call("POST", "/_fake/verify", {"verify_token": "wrong"})
    assert answer["verified"] is False and answer["status"] == 403
    # Mounted inside another app (as `chasqui serve` may do), same routes under the prefix.
    parent = web.Application()
    config = SandboxConfig(
        "s", "v", {TOKEN}, WABA, [SandboxNumber(PNID, DISPLAY, "http://127.0.0.1:9/")], ADMIN
    )
    parent.add_subapp("/sandbox/", create_sandbox_app(config))
    client = await aiohttp_client(parent)
    async with client.post(f"/sandbox{V}/{PNID}/messages", json=text()) as resp:
        assert resp.status == 401
    async with client.post(f"/sandbox{V}/{PNID}/messages", json=text(), headers=AUTH) as resp:
        assert resp.status == 200  # accepted; the closed window fails it later
    inbound = {"from": ANA, "text": "x"}
    async with client.post("/sandbox/_fake/inbound", json=inbound) as resp:
        assert resp.status == 401  # the controls take the admin token under a prefix too
    async with client.post("/sandbox/_fake/inbound", json=inbound, headers=ADMIN_AUTH) as resp:
        assert resp.status == 200
        assert (await resp.json())["delivery"]["status"] is None  # nothing listens on port 9
    async with client.get("/sandbox/_fake/sent", headers=ADMIN_AUTH) as resp:
        assert len((await resp.json())["data"]) == 1


FAKE_CONTROLS = [
    ("POST", "/_fake/inbound", {"from": ANA, "text": "hola"}),
    ("GET", "/_fake/errors", None),
    ("POST", "/_fake/errors", {"code": 131026}),
    ("DELETE", "/_fake/errors", None),
    ("POST", "/_fake/clock", {"advance": 60}),
    ("GET", "/_fake/templates", None),
    ("POST", "/_fake/webhook-faults", {"duplicate": 1}),
    ("GET", "/_fake/sent", None),
    ("GET", "/_fake/webhooks", None),
    ("POST", "/_fake/flush", None),
    ("POST", "/_fake/reset", None),
    ("POST", "/_fake/verify", None),
]


@pytest.mark.parametrize(("method", "path", "body"), FAKE_CONTROLS)
async def test_fake_controls_take_the_admin_token_only(
    sandbox: Sandbox, method: str, path: str, body: Any
) -> None:
    refused = [
        {},
        {"Authorization": "Bearer "},
        {"Authorization": f"Bearer {ADMIN}x"},
        {"Authorization": f"Bearer {ADMIN[:-1]}"},
        {"Authorization": f"Basic {ADMIN}"},
        AUTH,  # a Graph access token is not the admin token
    ]
    for headers in refused:
        status, answer = await sandbox.call(method, path, body, headers=headers)
        assert status == 401, (headers, answer)
        assert answer["error"]["code"] == "unauthorized", answer
    # nor in the query string, where the Graph routes take their token
    status, _ = await sandbox.call(method, f"{path}?access_token={ADMIN}", body, headers={})
    assert status == 401
    status, answer = await sandbox.call(method, path, body, headers=ADMIN_AUTH)
    assert status == 200, answer


async def test_refused_controls_change_nothing(sandbox: Sandbox) -> None:
    assert (await sandbox.send(text()))[0] == 200
    wrong = {"Authorization": "Bearer guess"}
    assert (await sandbox.call("POST", "/_fake/inbound", {"from": ANA}, headers=wrong))[0] == 401
    assert (await sandbox.call("POST", "/_fake/reset", headers=wrong))[0] == 401
    assert (await sandbox.call("POST", "/_fake/clock", {"advance": 9e9}, headers=wrong))[0] == 401
    assert (await sandbox.call("GET", "/_fake/no-such-control", headers=wrong))[0] == 401
    assert sandbox.receiver.raw == []  # no inbound webhook was signed and posted
    _, sent = await sandbox.call("GET", "/_fake/sent")
    assert len(sent["data"]) == 1  # not reset
    _, clock = await sandbox.call("GET", "/_fake/clock")
    assert clock["offset"] == 0


async def test_graph_routes_keep_their_own_token(sandbox: Sandbox) -> None:
    # the admin token opens no Graph route, and a Graph node named "_fake" is a Graph route
    status, answer = await sandbox.send(text(), headers=ADMIN_AUTH)
    assert_meta_error(status, answer, 190, http_status=401)
    status, answer = await sandbox.call("POST", f"{V}/_fake/messages", text(), headers=ADMIN_AUTH)
    assert_meta_error(status, answer, 190, http_status=401)
    status, answer = await sandbox.call("POST", f"{V}/_fake/messages", text())
    assert_meta_error(status, answer, 100)
    status, _ = await sandbox.call(
        "GET", f"{V}/{WABA}/message_templates?access_token={TOKEN}", headers={}
    )
    assert status == 200


def test_the_sandbox_will_not_run_without_an_admin_token() -> None:
    config = SandboxConfig("s", "v", {TOKEN}, WABA, [SandboxNumber(PNID, DISPLAY, "http://x/")])
    with pytest.raises(ValueError, match="admin_token"):
        create_sandbox_app(config)


# -- send validation, code by code (reference 12.1) ------------------------------------------


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({**text(), "messaging_product": "sms"}, 100),
        ({k: v for k, v in text().items() if k != "to"}, 131008),
        ({**text(), "type": "carrier_pigeon"}, 100),
        ({**text(), "text": {"preview_url": False}}, 100),
        (text(body="x" * 4097), 131009),
        (buttons(4), 131009),
        ({**buttons(2), "interactive": {**buttons(2)["interactive"], "action": {"buttons": [
            {"type": "reply", "reply": {"id": "same", "title": "A"}},
            {"type": "reply", "reply": {"id": "same", "title": "B"}},
        ]}}}, 131009),
        ({"messaging_product": "whatsapp", "to": ANA, "type": "image", "image": {}}, 100),
        ({"messaging_product": "whatsapp", "to": ANA, "type": "location",
          "location": {"latitude": 95, "longitude": 0}}, 131009),
        (template("order_delivered", "es_MX", [body_params("Ana", "A-1")]), 132001),
        (template("no_such_template", "es"), 132001),
        (template("promo_rejected", "es", [body_params("Ana", "!")]), 132001),
        (template("paused_promo", "en"), 132015),
        (template("order_delivered", "es", [body_params("Ana")]), 132000),
        (template("welcome", "en", [body_params("Ana")]), 132000),
        (template("appointment_reminder", "en", [{"type": "body", "parameters": [
            {"type": "text", "parameter_name": "first_name", "text": "Ana"},
            {"type": "text", "parameter_name": "time", "text": "3 pm"},
        ]}]), 132012),  # the IMAGE header is missing
        (template("appointment_reminder", "en", [
            {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://x.example/a.png"}}]},
            body_params("Ana", "3 pm"),
        ]), 132012),  # positional values for NAMED parameters
        (template("order_delivered", "es", [
            body_params("Ana", "A-1"),
            {"type": "button", "sub_type": "url", "index": "0",
             "parameters": [{"type": "text", "text": "x"}]},
        ]), 132012),  # button 0 is a quick reply, not a URL
        (template("order_delivered", "es", [
            body_params("Ana", "A-1"),
            {"type": "button", "sub_type": "quick_reply", "index": 5,
             "parameters": [{"type": "payload", "payload": "P"}]},
        ]), 132012),  # no button 5
    ],
)  # fmt: skip
async def test_invalid_sends_get_meta_error_codes(
    sandbox: Sandbox, body: dict[str, Any], code: int
) -> None:
    await sandbox.inbound(text="hola")  # window open: only validation can fail
    assert_meta_error(*await sandbox.send(body), code)


async def test_valid_template_sends_accept_any_case_and_index_type(sandbox: Sandbox) -> None:
    status, answer = await sandbox.send(
        template(
            "order_delivered",
            "es",
            [
                body_params("Ana", "A-1042"),
                {"type": "button", "sub_type": "QUICK_REPLY", "index": 1,
                 "parameters": [{"type": "payload", "payload": "NOT_RECEIVED"}]},
            ],
        )
    )  # fmt: skip
    assert status == 200, answer
    assert answer["contacts"] == [{"input": f"+{ANA}", "wa_id": ANA}]
    assert answer["messages"][0]["id"].startswith("wamid.")
    assert answer["messages"][0]["message_status"] == "accepted"
    status, answer = await sandbox.send(
        template(
            "appointment_reminder",
            "en",
            [
                {"type": "HEADER", "parameters": [
                    {"type": "image", "image": {"link": "https://x.example/a.png"}}]},
                {"type": "body", "parameters": [
                    {"type": "text", "parameter_name": "time", "text": "3 pm"},
                    {"type": "text", "parameter_name": "first_name", "text": "Ana"},
                ]},
            ],
        )
    )  # fmt: skip
    assert status == 200, answer


async def test_throughput_bucket_gives_130429(make_sandbox: Factory) -> None:
    sandbox = await make_sandbox(max_mps=2.0, clock=lambda: 1_000_000.0)
    for _ in range(2):
        status, _ = await sandbox.send(template("welcome", "en"))
        assert status == 200
    assert_meta_error(*await sandbox.send(template("welcome", "en")), 130429)
    await sandbox.call("POST", "/_fake/clock", {"advance": 1})
    assert (await sandbox.send(template("welcome", "en")))[0] == 200


async def test_pair_rate_gives_131056_for_that_recipient_only(make_sandbox: Factory) -> None:
    sandbox = await make_sandbox(max_mps=0, clock=lambda: 1_000_000.0)
    for _ in range(45):
        assert (await sandbox.send(template("welcome", "en")))[0] == 200
    status, answer = await sandbox.send(template("welcome", "en"))
    assert_meta_error(status, answer, 131056)
    assert answer["error"]["message"] == (
        "(#131056) (Business Account, Consumer Account) pair rate limit hit"
    )
    other = {**template("welcome", "en"), "to": "+5511987650456"}
    assert (await sandbox.send(other))[0] == 200
    await sandbox.call("POST", "/_fake/clock", {"advance": 6})  # one token back
    assert (await sandbox.send(template("welcome", "en")))[0] == 200
    assert (await sandbox.send(template("welcome", "en")))[0] == 400


async def test_closed_window_sync_mode_answers_131047(make_sandbox: Factory) -> None:
    sandbox = await make_sandbox(window_mode="sync")
    assert_meta_error(*await sandbox.send(text()), 131047)
    assert (await sandbox.send(template("welcome", "en")))[0] == 200  # templates always go


async def test_closed_window_async_mode_accepts_then_fails_131047(sandbox: Sandbox) -> None:
    await sandbox.inbound(text="hola")
    await sandbox.call("POST", "/_fake/clock", {"advance": 24 * 3600 + 1})
    status, answer = await sandbox.send(text(biz_opaque_callback_data="flow=x"))
    assert status == 200
    wamid = answer["messages"][0]["id"]
    assert "message_status" not in answer["messages"][0]
    assert await sandbox.flush() == 1
    [failed] = sandbox.receiver.statuses()
    assert failed["id"] == wamid and failed["status"] == "failed"
    assert failed["recipient_id"] == ANA
    assert failed["biz_opaque_callback_data"] == "flow=x"
    assert failed["errors"][0]["code"] == 131047
    assert failed["errors"][0]["title"] == "Re-engagement message"
    assert "pricing" not in failed


# -- statuses ----------------------------------------------------------------------------------


async def test_status_sequence_and_pricing(sandbox: Sandbox) -> None:
    await sandbox.inbound(text="hola")  # opens the window
    _, free_text = await sandbox.send(text())
    _, free_utility = await sandbox.send(template("order_delivered", "es", [body_params("A", "B")]))
    _, marketing = await sandbox.send(template("welcome", "en"))
    await sandbox.call("POST", "/_fake/clock", {"advance": 25 * 3600})
    _, paid_utility = await sandbox.send(template("order_delivered", "es", [body_params("A", "B")]))
    assert await sandbox.flush() == 12
    by_id: dict[str, list[dict[str, Any]]] = {}
    for item in sandbox.receiver.statuses():
        by_id.setdefault(item["id"], []).append(item)

    def pricing(answer: dict[str, Any]) -> dict[str, Any]:
        items = by_id[answer["messages"][0]["id"]]
        assert [i["status"] for i in items] == ["sent", "delivered", "read"]
        assert items[0]["pricing"] == items[1]["pricing"]
        assert "pricing" not in items[2] and "conversation" not in items[0]
        assert all(i["recipient_id"] == ANA for i in items)
        return dict(items[0]["pricing"])

    assert pricing(free_text) == {
        "billable": False,
        "pricing_model": "PMP",
        "type": "free_customer_service",
        "category": "service",
    }
    assert pricing(free_utility)["type"] == "free_customer_service"
    assert pricing(marketing) == {
        "billable": True,
        "pricing_model": "PMP",
        "type": "regular",
        "category": "marketing",
    }
    assert pricing(paid_utility) == {
        "billable": True,
        "pricing_model": "PMP",
        "type": "regular",
        "category": "utility",
    }
    payload = sandbox.receiver.payloads[-1]
    assert payload["object"] == "whatsapp_business_account"
    change = payload["entry"][0]["changes"][0]
    assert payload["entry"][0]["id"] == WABA and change["field"] == "messages"
    assert change["value"]["metadata"] == {
        "display_phone_number": DISPLAY,
        "phone_number_id": PNID,
    }


async def test_background_sender_emits_statuses_on_time(make_sandbox: Factory) -> None:
    sandbox = await make_sandbox(status_delays=(0.01, 0.02, 0.03))
    _, answer = await sandbox.send(template("welcome", "en"))
    async with asyncio.timeout(5):
        while len(sandbox.receiver.statuses()) < 3:
            sandbox.receiver.arrived.clear()
            await sandbox.receiver.arrived.wait()
    assert {s["status"] for s in sandbox.receiver.statuses()} == {"sent", "delivered", "read"}
    assert {s["id"] for s in sandbox.receiver.statuses()} == {answer["messages"][0]["id"]}
    _, record = await sandbox.call("GET", "/_fake/webhooks?kind=statuses")
    # the three statuses went out in one to three webhooks (those due together are batched)
    assert 1 <= len(record["data"]) <= 3
    assert all(r["status"] == 200 and r["latency_ms"] >= 0 for r in record["data"])


# -- fault injection ---------------------------------------------------------------------------


async def test_injected_sync_error_answers_the_matching_send_only(sandbox: Sandbox) -> None:
    rule = {"match": {"to": f"+{ANA}"}, "code": 131026, "http_status": 400, "mode": "sync"}
    status, _ = await sandbox.call("POST", "/_fake/errors", {**rule, "times": 1})
    assert status == 200
    other = {**template("welcome", "en"), "to": "+5511987650456"}
    assert (await sandbox.send(other))[0] == 200  # another recipient: untouched
    assert_meta_error(*await sandbox.send(template("welcome", "en")), 131026)
    assert (await sandbox.send(template("welcome", "en")))[0] == 200  # times: 1 used up
    await sandbox.call("POST", "/_fake/errors", {"code": 131000, "http_status": 500, "times": 2})
    assert_meta_error(*await sandbox.send(template("welcome", "en")), 131000, http_status=500)


async def test_injected_async_error_accepts_then_fails(sandbox: Sandbox) -> None:
    rule = {"match": {"template": "welcome"}, "code": 131049, "mode": "async", "times": None}
    await sandbox.call("POST", "/_fake/errors", rule)
    for _ in range(2):
        assert (await sandbox.send(template("welcome", "en")))[0] == 200
    await sandbox.flush()
    assert [(s["status"], s["errors"][0]["code"]) for s in sandbox.receiver.statuses()] == [
        ("failed", 131049),
        ("failed", 131049),
    ]
    _, rules = await sandbox.call("GET", "/_fake/errors")
    assert rules["rules"][0]["times"] is None  # still armed


async def test_duplicate_deliveries_repeat_the_same_bytes(sandbox: Sandbox) -> None:
    await sandbox.call("POST", "/_fake/webhook-faults", {"duplicate": 1})
    answer = await sandbox.inbound(text="hola")
    await sandbox.inbound(text="otra")
    await sandbox.flush()
    raws = sandbox.receiver.raw
    assert len(raws) == 3 and raws[0] == raws[1] != raws[2]
    assert sandbox.receiver.signatures[0] == sandbox.receiver.signatures[1]
    assert (
        sandbox.receiver.payloads[0]["entry"][0]["changes"][0]["value"]["messages"][0]["id"]
        == answer["id"]
    )
    _, record = await sandbox.call("GET", "/_fake/webhooks?kind=messages")
    assert [r["duplicate"] for r in record["data"]] == [False, True, False]


async def test_read_before_sent_and_skip_delivered_faults(sandbox: Sandbox) -> None:
    await sandbox.call("POST", "/_fake/webhook-faults", {"read_before_sent": 1})
    await sandbox.send(template("welcome", "en"))
    await sandbox.flush()
    assert [s["status"] for s in sandbox.receiver.statuses()] == ["read", "delivered", "sent"]
    await sandbox.call("POST", "/_fake/webhook-faults", {"skip_delivered": 1})
    await sandbox.send(template("welcome", "en"))
    await sandbox.flush()
    later = sandbox.receiver.statuses()[3:]
    assert [s["status"] for s in later] == ["sent", "read"]
    assert later[1]["pricing"] == later[0]["pricing"]  # pricing rides on read instead


async def test_non_200_is_redelivered_with_the_same_bytes(make_sandbox: Factory) -> None:
    sandbox = await make_sandbox()
    sandbox.receiver.answers = [500, 403]
    await sandbox.inbound(text="¿llegó?")
    _, record = await sandbox.call("GET", "/_fake/webhooks")
    assert record["pending"] == 1 and record["data"][0]["status"] == 500
    await sandbox.flush()  # second attempt: 403
    await sandbox.flush()  # third attempt: 200
    assert len(sandbox.receiver.raw) == 3 and len(set(sandbox.receiver.raw)) == 1
    _, record = await sandbox.call("GET", "/_fake/webhooks")
    [delivery] = record["data"]
    assert [a["status"] for a in delivery["attempts"]] == [500, 403, 200]
    assert delivery["delivered"] and record["pending"] == 0


async def test_redelivery_stops_at_the_horizon(make_sandbox: Factory) -> None:
    sandbox = await make_sandbox(retry_delays=(LATER,), retry_horizon=10.0)
    sandbox.receiver.answers = [500]
    await sandbox.inbound(text="hola")
    _, record = await sandbox.call("GET", "/_fake/webhooks")
    assert record["data"][0]["gave_up"] and record["pending"] == 0


# -- inbound messages --------------------------------------------------------------------------


def _message(payload: dict[str, Any]) -> dict[str, Any]:
    return dict(payload["entry"][0]["changes"][0]["value"]["messages"][0])


async def test_inbound_text_opens_the_window(sandbox: Sandbox) -> None:
    answer = await sandbox.inbound(text="hola", name="Ana Quispe")
    assert answer["delivery"]["status"] == 200
    value = sandbox.receiver.payloads[0]["entry"][0]["changes"][0]["value"]
    assert value["contacts"] == [{"profile": {"name": "Ana Quispe"}, "wa_id": ANA}]
    message = value["messages"][0]
    assert message["id"] == answer["id"] and message["from"] == ANA
    assert message["type"] == "text" and message["text"] == {"body": "hola"}
    assert message["timestamp"].isdigit()
    await sandbox.send(text())
    await sandbox.flush()
    assert [s["status"] for s in sandbox.receiver.statuses()] == ["sent", "delivered", "read"]
    # Mark-as-read needs a message this number received.
    read = {"messaging_product": "whatsapp", "status": "read", "message_id": answer["id"]}
    assert await sandbox.send(read) == (200, {"success": True})
    assert_meta_error(*await sandbox.send({**read, "message_id": "wamid.nope"}), 100)


async def test_inbound_button_tap_answers_the_template(sandbox: Sandbox) -> None:
    components = [
        body_params("Ana", "A-1042"),
        {"type": "button", "sub_type": "quick_reply", "index": "0",
         "parameters": [{"type": "payload", "payload": "RECEIVED"}]},
    ]  # fmt: skip
    _, sent = await sandbox.send(template("order_delivered", "es", components))
    wamid = sent["messages"][0]["id"]
    await sandbox.inbound(type="button", text="Sí, lo recibí")
    await sandbox.inbound(type="button", text="No lo recibí")
    first, second = (_message(p) for p in sandbox.receiver.payloads)
    assert first["context"] == {"from": DISPLAY, "id": wamid}
    assert first["button"] == {"payload": "RECEIVED", "text": "Sí, lo recibí"}
    assert second["button"] == {"payload": "No lo recibí", "text": "No lo recibí"}
    await sandbox.call("POST", "/_fake/webhook-faults", {"omit_context": 1})
    await sandbox.inbound(type="button", text="No lo recibí")
    assert "context" not in _message(sandbox.receiver.payloads[2])


async def test_inbound_interactive_replies(sandbox: Sandbox) -> None:
    await sandbox.inbound(text="menú")
    _, sent = await sandbox.send(buttons(3))
    await sandbox.inbound(type="interactive", interactive_id="b1")
    reply = _message(sandbox.receiver.payloads[1])
    assert reply["context"]["id"] == sent["messages"][0]["id"]
    assert reply["interactive"] == {
        "type": "button_reply",
        "button_reply": {"id": "b1", "title": "Opción 1"},
    }
    status, sent = await sandbox.send(LIST)
    assert status == 200, sent
    await sandbox.inbound(type="interactive", text="Express")  # tapped by title
    reply = _message(sandbox.receiver.payloads[2])
    assert reply["context"]["id"] == sent["messages"][0]["id"]
    assert reply["interactive"] == {
        "type": "list_reply",
        "list_reply": {"id": "envio_express", "title": "Express", "description": "Llega mañana"},
    }


async def test_inbound_image_and_its_media(sandbox: Sandbox) -> None:
    await sandbox.inbound(type="image", caption="Este modelo", media_content="PNGDATA")
    image = _message(sandbox.receiver.payloads[0])["image"]
    assert image["caption"] == "Este modelo" and image["mime_type"] == "image/jpeg"
    assert image["sha256"] == base64.b64encode(hashlib.sha256(b"PNGDATA").digest()).decode()
    status, meta = await sandbox.call("GET", f"{V}/{image['id']}")
    assert status == 200 and meta["file_size"] == 7 and meta["id"] == image["id"]
    path = URL(meta["url"]).path
    async with sandbox.client.get(path) as resp:
        assert resp.status == 401  # the media URL needs the token too
    async with sandbox.client.get(path, headers=AUTH) as resp:
        assert resp.status == 200 and await resp.read() == b"PNGDATA"


async def test_inbound_batch_and_unusual_shapes(sandbox: Sandbox) -> None:
    status, answer = await sandbox.call(
        "POST",
        "/_fake/inbound",
        {
            "messages": [
                {"from": ANA, "text": "uno"},
                {"from": ANA, "type": "interactive", "raw": {}},
                {"from": "5511987650456", "type": "unsupported"},
                {"from": ANA, "user_id": "PE.40718236650194827731", "type": "location",
                 "latitude": -13.5, "longitude": -71.9, "location_name": "Plaza de Armas"},
            ]
        },
    )  # fmt: skip
    assert status == 200 and len(answer["ids"]) == 4
    [payload] = sandbox.receiver.payloads
    changes = payload["entry"][0]["changes"]
    assert [len(c["value"]["messages"]) for c in changes] == [3, 1]
    assert changes[0]["value"]["messages"][1]["interactive"] == {}
    assert changes[1]["value"]["messages"][0]["errors"][0]["code"] == 131051
    location = changes[0]["value"]["messages"][2]
    assert location["from_user_id"] == "PE.40718236650194827731"
    assert location["location"]["name"] == "Plaza de Armas"


# -- templates -------------------------------------------------------------------------------


async def test_template_listing_pages_and_filters(sandbox: Sandbox) -> None:
    path = f"{V}/{WABA}/message_templates?limit=4&fields=name,status"
    status, page = await sandbox.call("GET", path)
    assert status == 200 and len(page["data"]) == 4
    assert all(set(t) == {"name", "status", "id"} for t in page["data"])
    assert "next" in page["paging"] and "previous" not in page["paging"]
    _, second = await sandbox.call("GET", URL(page["paging"]["next"]).path_qs)
    assert len(second["data"]) == 2 and "next" not in second["paging"]
    seen = [t["id"] for t in page["data"] + second["data"]]
    assert len(set(seen)) == 6
    _, approved = await sandbox.call("GET", f"{V}/{WABA}/message_templates?status=APPROVED")
    assert len(approved["data"]) == 4
    _, named = await sandbox.call("GET", f"{V}/{WABA}/message_templates?name=order&language=pt_BR")
    [pt] = named["data"]
    assert pt["name"] == "order_delivered" and pt["parameter_format"] == "POSITIONAL"
    assert pt["components"][1]["buttons"][0] == {"type": "QUICK_REPLY", "text": "Sim, recebi"}
    _, one = await sandbox.call("GET", f"{V}/{pt['id']}?fields=status")
    assert one == {"status": "APPROVED", "id": pt["id"]}


async def test_created_template_is_approved_with_a_webhook(sandbox: Sandbox) -> None:
    new = {
        "name": "pickup_notice",
        "language": "es",
        "category": "utility",
        "components": [
            {"type": "body", "text": "Hola {{1}}, tu pedido se puede recoger desde el {{2}}.",
             "example": {"body_text": [["Ana", "jueves"]]}},
            {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Confirmar"}]},
        ],
    }  # fmt: skip
    path = f"{V}/{WABA}/message_templates"
    status, created = await sandbox.call("POST", path, new)
    assert status == 200 and created["status"] == "PENDING" and created["category"] == "UTILITY"
    assert_meta_error(*await sandbox.send(template("pickup_notice", "es")), 132001)
    status, dup = await sandbox.call("POST", path, new)
    assert_meta_error(status, dup, 100)
    assert dup["error"]["error_subcode"] == 2388024
    bad = {**new, "name": "edge", "components": [{"type": "BODY", "text": "{{1}} hola"}]}
    assert_meta_error(*await sandbox.call("POST", path, bad), 100)
    adjacent = {
        **new,
        "name": "adjacent",
        "components": [{"type": "BODY", "text": "Hola {{1}}{{2}} fin",
                        "example": {"body_text": [["a", "b"]]}}],
    }  # fmt: skip
    _, rejected = await sandbox.call("POST", path, adjacent)
    assert await sandbox.flush() == 2
    first, second = sandbox.receiver.payloads
    assert first["entry"][0]["changes"][0]["field"] == "message_template_status_update"
    value = first["entry"][0]["changes"][0]["value"]
    assert value["event"] == "APPROVED" and value["reason"] == "NONE"
    assert value["message_template_id"] == int(created["id"])  # an integer here
    assert value["message_template_name"] == "pickup_notice"
    assert isinstance(first["entry"][0]["time"], int)
    value = second["entry"][0]["changes"][0]["value"]
    assert (value["event"], value["reason"]) == ("REJECTED", "INVALID_FORMAT")
    assert value["message_template_id"] == int(rejected["id"])
    assert "adjacent" in value["rejection_info"]["reason"]
    ok = template("pickup_notice", "es", [body_params("Ana", "jueves")])
    assert (await sandbox.send(ok))[0] == 200
    status, _ = await sandbox.call("DELETE", f"{path}?name=pickup_notice")
    assert status == 200
    assert_meta_error(*await sandbox.send(ok), 132001)


async def test_fake_template_status_change_emits_its_webhook(sandbox: Sandbox) -> None:
    status, answer = await sandbox.call(
        "POST", "/_fake/templates", {"set_status": {"name": "welcome", "status": "PAUSED"}}
    )
    assert status == 200 and answer["deliveries"][0]["status"] == 200
    value = sandbox.receiver.payloads[0]["entry"][0]["changes"][0]["value"]
    assert value["event"] == "PAUSED" and value["other_info"]["title"] == "FIRST_PAUSE"
    assert_meta_error(*await sandbox.send(template("welcome", "en")), 132015)


# -- records and reset ---------------------------------------------------------------------------


async def test_sent_records_and_reset(sandbox: Sandbox) -> None:
    await sandbox.send(template("welcome", "en"))
    await sandbox.send(text())  # closed window: accepted, fails later
    await sandbox.send({**text(), "messaging_product": "sms"})
    _, sent = await sandbox.call("GET", "/_fake/sent")
    assert [r["http_status"] for r in sent["data"]] == [200, 200, 400]
    assert json.loads(sent["data"][0]["raw"]) == template("welcome", "en")
    assert sent["data"][0]["response"]["messages"][0]["id"].startswith("wamid.")
    _, only_text = await sandbox.call("GET", f"/_fake/sent?type=text&to={ANA}&status=200")
    assert len(only_text["data"]) == 1
    await sandbox.call("POST", "/_fake/clock", {"advance": 100})
    await sandbox.call("POST", "/_fake/reset")
    _, sent = await sandbox.call("GET", "/_fake/sent")
    _, hooks = await sandbox.call("GET", "/_fake/webhooks")
    _, clock = await sandbox.call("GET", "/_fake/clock")
    assert sent["data"] == [] and hooks == {"data": [], "pending": 0} and clock["offset"] == 0
    assert await sandbox.flush() == 0
