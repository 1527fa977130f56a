"""The channel protocol is the whole contract: a new channel is one module that imports nothing of
``bot``; the server mounts it, the core ingests its events; no channel reaches past the protocol."""

from __future__ import annotations

import asyncio
import hmac
import subprocess
import sys
import time
import types
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bot.api.app import create_app
from bot.work.runtime import Runtime
from channels.protocol import (
    Capabilities,
    Channel,
    Inbound,
    InboundEvent,
    Message,
    SendResult,
    Status,
    WebhookError,
)
from tests.support.api import AUTH, app_config
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent


# ---- a whole channel type: JSON posts in (a shared token), a list out ------------------------
class TinyChannel(Channel):
    TYPE = "tiny"
    CAPABILITIES = Capabilities(schemes=("ext",), buttons=0, redelivery=3600)
    outbox: ClassVar[list[dict[str, Any]]] = []

    async def parse(self, request: web.Request) -> Inbound:
        token = str(self.config.model_dump().get("token", ""))
        given = request.headers.get("X-Token", "")
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise WebhookError(401, "bad_token", "send the channel's token as X-Token")
        try:
            body = await request.json()
            events: list[InboundEvent] = [
                Message(self.name, f"ext:{m['from']}", m["id"], m["at"], m.get("text", ""))
                for m in body.get("messages", [])
            ]
            events += [
                Status(self.name, s["id"], s["status"], s["at"]) for s in body.get("statuses", [])
            ]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise WebhookError(400, "bad_request", "not a tiny webhook") from None
        return Inbound(events)

    async def send(self, message: dict[str, Any]) -> SendResult:
        self.outbox.append(message)
        return SendResult(True, external_id=f"tiny-{len(self.outbox)}")


# ----------------------------------------------------------------------------------------------

FLOW = """\
name: Tiny echo
nodes:
  - id: hello
    send_message: {text: Hello}
    next: ask
  - id: ask
    wait_for_reply:
      result: said
      other: {category: Other, next: answer}
  - id: answer
    send_message: {text: "got @input.text"}
    next: ask
"""
Client = TestClient[web.Request, web.Application]


async def test_a_new_channel_is_one_module(
    aiohttp_client: Callable[[web.Application], Awaitable[Client]],
    valkey_url: str,
    redis: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = types.ModuleType("channels.tiny")
    module.CHANNEL = TinyChannel  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "channels.tiny", module)
    monkeypatch.setattr(TinyChannel, "outbox", [])
    config = app_config(
        tmp_path, valkey_url, {"echo": FLOW}, channels={"mine": {"type": "tiny", "token": "t0k"}}
    )
    runtime = Runtime(config)
    client = await aiohttp_client(create_app(config, runtime))

    async def post(body: Any, token: str = "t0k") -> tuple[int, Any]:
        async with client.post("/webhooks/tiny/mine", json=body, headers={"X-Token": token}) as r:
            return r.status, (await r.json() if r.content_type == "application/json" else None)

    now = time.time()
    hello = {"messages": [{"from": "ana", "id": "t1", "at": now, "text": "hi"}]}
    assert await post(hello) == (200, None)
    cid = str(
        await wait_for(lambda: runtime.store.contact_id_for_urn("ext:ana"), "the new contact")
    )
    async with client.post(f"/api/v1/contacts/{cid}/start", json={"flow": "echo"}, headers=AUTH):
        pass

    async def greeted() -> list[dict[str, Any]]:
        return TinyChannel.outbox

    await wait_for(greeted, "the greeting")
    reply = {"messages": [{"from": "ana", "id": "t2", "at": time.time(), "text": "yo"}]}
    assert (await post(reply))[0] == 200
    assert (await post(reply))[0] == 200  # a redelivery: dropped by the core

    async def answered() -> list[str]:
        texts = [m["text"] for m in TinyChannel.outbox]
        return texts if len(texts) >= 2 else []

    assert await wait_for(answered, "the answer") == ["Hello", "got yo"]
    status = {"statuses": [{"id": "tiny-2", "status": "delivered", "at": time.time()}]}
    assert (await post(status))[0] == 200
    messages = await wait_for(
        lambda: _delivered(runtime, cid), "the answer's status applied by the core"
    )
    assert [m["text"] for m in messages] == ["got yo"]
    await asyncio.sleep(0.1)  # nothing else was answered (the redelivery is not a reply)
    assert [m["text"] for m in TinyChannel.outbox] == ["Hello", "got yo"]
    # refusals are the channel's, answered as JSON errors with a code
    assert await post(hello, token="nope") == (
        401,
        {"error": {"code": "bad_token", "message": "send the channel's token as X-Token"}},
    )
    status_code, body = await post(["junk"])
    assert (status_code, body["error"]["code"]) == (400, "bad_request")


async def _delivered(runtime: Runtime, cid: str) -> list[dict[str, Any]]:
    return [m for m in await runtime.store.messages(cid) if m.get("status") == "delivered"]


# ---- the layering of channels/ (the import contracts: tests/test_import_contracts.py) ----------
def test_the_production_whatsapp_channel_never_loads_its_sandbox() -> None:
    code = (
        "import sys, channels.whatsapp; "
        "print(sorted(m for m in sys.modules if m.startswith(('channels.whatsapp.sandbox', "
        "'bot.store', 'bot.engine'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
