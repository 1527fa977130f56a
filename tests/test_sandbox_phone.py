"""The sandbox phone over real HTTP on loopback: what the bot sent, rendered as WhatsApp shows it,
replies and taps that reach the webhook receiver signed as Meta would post them, and the ticks.

The phone is mounted the way Studio mounts it (a sub-app under a parent whose middleware signs
the user in and leaves the CSRF token on the request); here a tiny stand-in plays that parent,
so the phone's own behaviour is tested alone. tests/browser/ drives it inside the real Studio.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from channels.protocol import STUDIO_CAN_WRITE, STUDIO_CSRF
from channels.whatsapp.sandbox import SandboxConfig, SandboxNumber, create_sandbox_app, sign
from channels.whatsapp.sandbox.phone import create_phone_app
from tests.support.sandbox import (
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
)

CSRF = "csrf-of-the-session"
PHONE = "/studio/channels/wa/phone"
V = "/v24.0"

Client = TestClient[web.Request, web.Application]
AiohttpServer = Callable[[web.Application], Awaitable[TestServer]]
AiohttpClient = Callable[[web.Application], Awaitable[Client]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def fake_studio(request: web.Request, handler: Handler) -> web.StreamResponse:
    """What Studio's middleware leaves for a channel's page: the session's CSRF token and the
    role, after checking the CSRF of a POST (cookie ``who``: absent = signed out)."""
    who = request.cookies.get("who")
    if who is None:
        return await handler(request)  # signed out: nothing set, the phone must refuse
    if request.method == "POST" and (await request.post()).get("csrf") != CSRF:
        return web.Response(status=403, text="csrf")
    request[STUDIO_CSRF] = CSRF
    request[STUDIO_CAN_WRITE] = who == "full"
    return await handler(request)


class Phone:
    def __init__(self, client: Client, receiver: Receiver) -> None:
        self.client, self.receiver = client, receiver

    async def get(self, path: str = "/", **params: str) -> tuple[int, str]:
        async with self.client.get(PHONE + path, params=params, allow_redirects=True) as resp:
            return resp.status, await resp.text()

    async def post(self, path: str, **form: str) -> tuple[int, str]:
        async with self.client.post(PHONE + path, data={"csrf": CSRF, **form}) as resp:
            return resp.status, await resp.text()

    async def graph(self, body: dict[str, Any]) -> str:
        async with self.client.post(f"/sb{V}/{PNID}/messages", json=body, headers=AUTH) as r:
            answer = await r.json()
            assert r.status == 200, answer
            return str(answer["messages"][0]["id"]) if "messages" in answer else ""

    async def fake(self, path: str, body: Any = None) -> Any:
        async with self.client.post(f"/sb/_fake/{path}", json=body, headers=ADMIN_AUTH) as r:
            assert r.status == 200
            return await r.json()

    def messages(self) -> list[dict[str, Any]]:
        out = []
        for raw, signature in zip(self.receiver.raw, self.receiver.signatures, strict=True):
            assert hmac.compare_digest(signature, sign(raw, SECRET))  # signed as Meta signs
            for entry in json.loads(raw)["entry"]:
                for change in entry["changes"]:
                    out += change["value"].get("messages", [])
        return out


@pytest.fixture
async def make_phone(aiohttp_server: AiohttpServer, aiohttp_client: AiohttpClient) -> Any:
    async def make(role: str | None = "full", **overrides: Any) -> Phone:
        receiver = Receiver()
        server = await aiohttp_server(receiver.app)
        config = SandboxConfig(
            app_secret=SECRET,
            verify_token="chasqui-verify-7f3a",
            access_tokens={TOKEN},
            waba_id=WABA,
            numbers=[SandboxNumber(PNID, DISPLAY, str(server.make_url("/webhooks/whatsapp/wa")))],
            admin_token="sandbox-admin-token",
            status_delays=(LATER, LATER + 1, LATER + 2),
            **overrides,
        )
        sandbox = create_sandbox_app(config)
        studio = web.Application(middlewares=[fake_studio])
        studio.add_subapp("/channels/wa/phone/", create_phone_app(sandbox))
        root = web.Application()
        root.add_subapp("/sb/", sandbox)
        root.add_subapp("/studio/", studio)
        client = await aiohttp_client(root)
        if role is not None:
            client.session.cookie_jar.update_cookies({"who": role})
        return Phone(client, receiver)

    return make


@pytest.fixture
async def phone(make_phone: Any) -> Phone:
    return await make_phone()


def order_delivered(name: str, order: str) -> dict[str, Any]:
    params = [{"type": "text", "text": name}, {"type": "text", "text": order}]
    return {
        "messaging_product": "whatsapp",
        "to": f"+{ANA}",
        "type": "template",
        "template": {
            "name": "order_delivered",
            "language": {"code": "es"},
            "components": [{"type": "body", "parameters": params}],
        },
    }


def text(body: str) -> dict[str, Any]:
    return {"messaging_product": "whatsapp", "to": ANA, "type": "text", "text": {"body": body}}


def ticks(html: str) -> list[str]:
    return re.findall(r'class="tick (\w+)"', html)


async def test_a_template_shows_as_whatsapp_shows_it_with_its_buttons(phone: Phone) -> None:
    await phone.graph(order_delivered("Ana <script>alert(1)</script>", "A-1042"))
    status, html = await phone.get(f"/chat/{ANA}")
    assert status == 200
    assert "Hola Ana &lt;script&gt;alert(1)&lt;/script&gt;, tu pedido A-1042 fue entregado." in html
    assert "<script>alert" not in html
    assert "order_delivered (es)" in html
    assert html.count('class="tap"') == 2 and "Sí, lo recibí" in html and "No lo recibí" in html
    # the list of chats names the number and previews the last message
    status, html = await phone.get("/")
    assert f"/studio/channels/wa/phone/chat/{ANA}" in html and "Hola Ana" in html


async def test_a_named_template_fills_its_variables_and_shows_header_and_footer(
    phone: Phone,
) -> None:
    named = [
        {"type": "text", "parameter_name": "first_name", "text": "Bruno"},
        {"type": "text", "parameter_name": "time", "text": "9 am"},
    ]
    image = {"type": "image", "image": {"link": "https://example.com/a.png"}}
    await phone.graph(
        {
            "messaging_product": "whatsapp",
            "to": ANA,
            "type": "template",
            "template": {
                "name": "appointment_reminder",
                "language": {"code": "en"},
                "components": [
                    {"type": "header", "parameters": [image]},
                    {"type": "body", "parameters": named},
                ],
            },
        }
    )
    _, html = await phone.get(f"/chat/{ANA}")
    assert "Hi Bruno, a reminder of your appointment at 9 am." in html
    assert '<div class="media">image</div>' in html
    assert '<p class="foot">Chasqui Demo</p>' in html


async def test_tapping_a_quick_reply_posts_a_signed_button_webhook_answering_it(
    phone: Phone,
) -> None:
    wamid = await phone.graph(order_delivered("Ana", "A-1042"))
    status, html = await phone.post(f"/chat/{ANA}/tap", wamid=wamid, tap="button:1")
    assert status == 200  # back on the chat (post/redirect/get)
    [message] = phone.messages()
    assert message["type"] == "button"
    assert message["button"] == {"payload": "No lo recibí", "text": "No lo recibí"}
    assert message["context"]["id"] == wamid and message["from"] == ANA
    # the contact's own bubble, ticked delivered since the receiver answered 200
    assert '<article class="bubble me"' in html and "No lo recibí</p>" in html
    assert ticks(html)[-1] == "delivered"


async def test_typing_a_reply_posts_a_text_and_opens_the_window(phone: Phone) -> None:
    status, _ = await phone.post(f"/chat/{ANA}/send", text="hola, ¿qué tal?", name="Ana")
    assert status == 200
    [message] = phone.messages()
    assert message["type"] == "text" and message["text"] == {"body": "hola, ¿qué tal?"}
    contacts = json.loads(phone.receiver.raw[0])["entry"][0]["changes"][0]["value"]["contacts"]
    assert contacts == [{"profile": {"name": "Ana"}, "wa_id": ANA}]
    await phone.graph(text("free text now goes: the window is open"))  # 131047 otherwise
    # an empty reply posts nothing and says why
    _, html = await phone.post(f"/chat/{ANA}/send", text="  ")
    assert "Write a message first." in html and len(phone.messages()) == 1


async def test_interactive_buttons_and_list_rows_are_tappable(phone: Phone) -> None:
    await phone.post(f"/chat/{ANA}/send", text="menu")
    rows = [
        {"id": "r1", "title": "Pedidos", "description": "ver tus pedidos"},
        {"id": "r2", "title": "Ayuda"},
    ]
    wamid = await phone.graph(
        {
            "messaging_product": "whatsapp",
            "to": ANA,
            "type": "interactive",
            "interactive": {
                "type": "list",
                "header": {"type": "text", "text": "Menú"},
                "body": {"text": "¿Qué necesitas?"},
                "action": {"button": "Ver opciones", "sections": [{"rows": rows}]},
            },
        }
    )
    _, html = await phone.get(f"/chat/{ANA}")
    assert "Ver opciones" in html and "ver tus pedidos" in html
    assert 'value="interactive:r2"' in html
    await phone.post(f"/chat/{ANA}/tap", wamid=wamid, tap="interactive:r1")
    reply = phone.messages()[-1]
    assert reply["interactive"] == {
        "type": "list_reply",
        "list_reply": {"id": "r1", "title": "Pedidos", "description": "ver tus pedidos"},
    }
    assert reply["context"]["id"] == wamid


async def test_ticks_follow_the_statuses_the_sandbox_posts(phone: Phone) -> None:
    await phone.graph(order_delivered("Ana", "A-1"))
    _, html = await phone.get(f"/chat/{ANA}")
    assert ticks(html) == ["sending"]
    await phone.fake("flush")
    _, html = await phone.get(f"/chat/{ANA}")
    assert ticks(html) == ["read"]
    # an async failure: the bubble is red with Meta's reason
    await phone.fake("errors", {"match": {"to": ANA}, "code": 131026, "mode": "async"})
    await phone.graph(order_delivered("Ana", "A-2"))
    await phone.fake("flush")
    _, html = await phone.get(f"/chat/{ANA}")
    assert ticks(html) == ["read", "failed"]
    assert "131026" in html and "bubble bot failed" in html


async def test_holding_reads_then_marking_as_read(phone: Phone) -> None:
    await phone.post(f"/chat/{ANA}/read", auto="off")
    await phone.graph(order_delivered("Ana", "A-1"))
    await phone.fake("flush")
    _, html = await phone.get(f"/chat/{ANA}")
    assert ticks(html) == ["delivered"]
    read = [s for s in phone.receiver.statuses() if s["status"] == "read"]
    assert read == []
    await phone.post(f"/chat/{ANA}/read")
    await phone.fake("flush")
    _, html = await phone.get(f"/chat/{ANA}")
    assert ticks(html) == ["read"]
    assert [s["status"] for s in phone.receiver.statuses()] == ["sent", "delivered", "read"]


async def test_chasqui_marking_the_contacts_message_read_shows_on_it(phone: Phone) -> None:
    await phone.post(f"/chat/{ANA}/send", text="hola")
    [message] = phone.messages()
    await phone.graph(
        {"messaging_product": "whatsapp", "status": "read", "message_id": message["id"]}
    )
    _, html = await phone.get(f"/chat/{ANA}")
    assert ticks(html) == ["read"]


async def test_the_live_fragment_answers_204_until_something_changes(phone: Phone) -> None:
    _, html = await phone.get(f"/chat/{ANA}")
    version = re.search(r'id="bubbles"[^>]*data-version="(\d+)"', html)
    assert version is not None
    status, _ = await phone.get(f"/chat/{ANA}/live", v=version.group(1))
    assert status == 204
    await phone.graph(order_delivered("Ana", "A-9"))
    status, fragment = await phone.get(f"/chat/{ANA}/live", v=version.group(1))
    assert status == 200 and fragment.startswith('<section class="bubbles"')
    assert "A-9" in fragment
    status, chats = await phone.get("/live", v="0")
    assert status == 200 and f"+{ANA}" in chats


async def test_opening_a_typed_number_goes_to_its_chat(phone: Phone) -> None:
    async with phone.client.get(PHONE + "/", params={"number": "+51 987-650 123"}) as resp:
        assert resp.url.path == f"{PHONE}/chat/{ANA}"
    _, html = await phone.get("/", number="abc")
    assert "That is not a phone number." in html


async def test_outside_studio_or_read_only_the_phone_changes_nothing(make_phone: Any) -> None:
    outside = await make_phone(role=None)
    status, body = await outside.get("/")
    assert status == 403 and "inside Studio" in body
    status, _ = await outside.post(f"/chat/{ANA}/send", text="hola")
    assert status == 403 and outside.messages() == []

    reader = await make_phone(role="read")
    await reader.graph(order_delivered("Ana", "A-1"))
    status, html = await reader.get(f"/chat/{ANA}")
    assert status == 200 and "Hola Ana" in html
    assert 'class="compose"' not in html and 'class="tap"' not in html
    status, _ = await reader.post(f"/chat/{ANA}/send", text="hola")
    assert status == 403 and reader.messages() == []


async def test_the_phone_speaks_spanish_when_the_browser_does(phone: Phone) -> None:
    headers = {"Accept-Language": "es-PE,es;q=0.9,en;q=0.5"}
    async with phone.client.get(PHONE + "/", headers=headers) as resp:
        html = await resp.text()
    assert "Teléfono de prueba" in html and 'lang="es"' in html


async def test_unknown_static_files_and_odd_users_are_404(phone: Phone) -> None:
    status, css = await phone.get("/static/phone.css")
    assert status == 200 and ".bubble" in css
    status, _ = await phone.get("/static/..%2Fphone.py")
    assert status == 404
    status, _ = await phone.get("/chat/ana%3Cx%3E")
    assert status == 404


async def test_the_list_shows_the_newest_chats_and_how_many_more(phone: Phone) -> None:
    for n in range(33):
        await phone.graph(order_delivered("Ana", f"A-{n}") | {"to": f"5198765{n:04d}"})
    _, html = await phone.get("/")
    assert html.count('<li><a href="/studio/channels/wa/phone/chat/') == 30
    assert "5198765" + "0032" in html and "5198765" + "0000" not in html  # newest first
    assert "3 more chats: type a number to open one." in html
