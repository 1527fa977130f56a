"""The sandbox's test identities, and a tiny receiver playing Chasqui's webhook endpoint."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

SECRET = "chasqui_test_app_secret"
TOKEN = "sandbox-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ADMIN = "sandbox-admin-token"  # what the /_fake controls take
ADMIN_AUTH = {"Authorization": f"Bearer {ADMIN}"}
WABA = "230918475512034"
PNID = "318207746650091"
DISPLAY = "15550142200"
ANA = "51987650123"
V = "/v24.0"
LATER = 3600.0  # delays the tests never wait for: /_fake/flush brings them forward


class Receiver:
    """Plays Chasqui's webhook endpoint: records raw bodies, answers scripted statuses."""

    def __init__(self) -> None:
        self.raw: list[bytes] = []
        self.signatures: list[str] = []
        self.answers: list[int] = []  # statuses to answer, in order; then 200
        self.arrived = asyncio.Event()
        self.app = web.Application()
        self.app.router.add_post("/webhooks/whatsapp/wa", self.handle)
        self.app.router.add_get("/webhooks/whatsapp/wa", self.verify)

    async def verify(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("hub.mode") == "subscribe" and q.get("hub.verify_token") == "chasqui-verify-7f3a":
            return web.Response(text=q.get("hub.challenge", ""))
        return web.Response(status=403)

    async def handle(self, request: web.Request) -> web.Response:
        self.raw.append(await request.read())
        self.signatures.append(request.headers.get("X-Hub-Signature-256", ""))
        self.arrived.set()
        return web.Response(status=self.answers.pop(0) if self.answers else 200)

    @property
    def payloads(self) -> list[dict[str, Any]]:
        return [json.loads(raw) for raw in self.raw]

    def statuses(self) -> list[dict[str, Any]]:
        out = []
        for payload in self.payloads:
            for entry in payload["entry"]:
                for change in entry["changes"]:
                    out += change["value"].get("statuses", [])
        return out
