"""A running Chasqui with a WhatsApp channel on the sandbox, and an HTTP client for both.

:class:`WA` is what the ``make_wa``/``wa`` fixtures (tests/conftest.py) hand a test: the admin API,
the sandbox's ``/_fake`` control routes, Chasqui's webhook endpoint raw, and waiting helpers.
:func:`start_wa` builds it: Chasqui on a free port with its channel on the sandbox mounted in the
same app, or on a separate sandbox app when a test needs sandbox options the mount does not expose.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from bot.api.app import create_app
from bot.work.runtime import Runtime
from channels.whatsapp.sandbox import SandboxConfig, SandboxNumber, create_sandbox_app, sign
from tests.support.api import app_config
from tests.support.serve import free_port
from tests.support.waiting import wait_for

ADMIN = "e2e-admin-token"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
PNID = "318207746650091"
WABA = "230918475512034"
DISPLAY = "15550142200"
ACCESS = "sandbox-token"
SECRET = "sandbox-app-secret"
VERIFY = "sandbox-verify-token"
ANA = "51987650123"
WEBHOOK = "/webhooks/whatsapp/whatsapp"

AiohttpServer = Callable[..., Awaitable[TestServer]]


class WA:
    """A running Chasqui with a WhatsApp channel, its sandbox, and an HTTP client for both."""

    def __init__(
        self, session: aiohttp.ClientSession, runtime: Runtime, base: str, sandbox: str
    ) -> None:
        self.http, self.runtime, self.base, self.sandbox = session, runtime, base, sandbox

    # -- the admin API -------------------------------------------------------------------------
    async def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.http.request(method, self.base + path, json=body, headers=AUTH) as r:
            return r.status, await r.json()

    async def contact(self, name: str, phone: str = ANA, **fields: str) -> str:
        status, body = await self.api(
            "POST",
            "/api/v1/contacts",
            {"urn": f"whatsapp:+{phone}", "name": name, "fields": fields},
        )
        assert status == 201, body
        return str(body["uuid"])

    async def find(self, urn: str) -> dict[str, Any]:
        status, body = await self.api("GET", f"/api/v1/contacts?urn={urn.replace('+', '%2B')}")
        assert status == 200, body
        [contact] = body["contacts"]
        return dict(contact)

    async def start(self, cid: str, flow: str, **params: str) -> None:
        status, body = await self.api(
            "POST", f"/api/v1/contacts/{cid}/start", {"flow": flow, "params": params}
        )
        assert status == 202, body

    async def messages(self, cid: str, direction: str | None = None) -> list[dict[str, Any]]:
        status, body = await self.api("GET", f"/api/v1/contacts/{cid}/messages")
        assert status == 200, body
        return [m for m in body["messages"] if direction is None or m["direction"] == direction]

    async def runs(self, cid: str) -> list[dict[str, Any]]:
        """The contact's runs, the active one first."""
        status, body = await self.api("GET", f"/api/v1/contacts/{cid}/runs")
        assert status == 200, body
        return list(body["runs"])

    async def run(self, cid: str) -> dict[str, Any]:
        return (await self.runs(cid))[0]

    async def sync_templates(self) -> int:
        status, body = await self.api("POST", "/api/v1/templates/sync")
        assert status == 200, body
        return int(body["synced"]["whatsapp"]["templates"])

    # -- the sandbox ---------------------------------------------------------------------------
    async def fake(self, method: str, path: str, body: Any = None) -> Any:
        url = f"{self.sandbox}/_fake/{path}"
        async with self.http.request(method, url, json=body, headers=AUTH) as r:
            assert r.status == 200, await r.text()
            return await r.json()

    async def inbound(self, **spec: Any) -> str:
        """A user message through the sandbox; Chasqui must have accepted it (200)."""
        answer = await self.fake("POST", "inbound", {"from": ANA, "name": "Ana Quispe", **spec})
        assert answer["delivery"]["status"] == 200, answer
        return str(answer["id"])

    async def sent(self, query: str = "") -> list[dict[str, Any]]:
        return list((await self.fake("GET", f"sent{query}"))["data"])

    async def flush(self) -> None:
        await self.fake("POST", "flush")

    # -- Chasqui's webhook endpoint, raw ---------------------------------------------------------
    async def post_webhook(
        self, raw: bytes | Any, signature: str | None = "sign", **kwargs: Any
    ) -> tuple[int, str]:
        headers = {"Content-Type": "application/json"}
        if signature == "sign":
            signature = sign(raw, SECRET) if isinstance(raw, bytes) else None
        if signature is not None:
            headers["X-Hub-Signature-256"] = signature
        async with self.http.post(self.base + WEBHOOK, data=raw, headers=headers, **kwargs) as r:
            return r.status, await r.text()

    # -- waiting ---------------------------------------------------------------------------------
    async def settled(self, cid: str, outgoing: int, status: str = "sent") -> list[dict[str, Any]]:
        """Wait until the contact has ``outgoing`` messages out, all at least ``status``."""
        rank = ["queued", "sent", "delivered", "read"]

        async def check() -> list[dict[str, Any]]:
            out = await self.messages(cid, "out")
            done = len(out) == outgoing and all(
                m["status"] == "failed" or rank.index(m["status"]) >= rank.index(status)
                for m in out
            )
            return out if done else []

        return await wait_for(check, f"{outgoing} messages {status}")

    async def fire_retries(self, cid: str, attempts: int) -> None:
        """Once the contact's message has failed ``attempts`` times and waits on its retry
        timer, make the timer due now (as the timer loop would at retry_at)."""

        async def waiting() -> bool:
            out = await self.messages(cid, "out")
            return any(m.get("attempts", 0) >= attempts and m.get("retry_at") for m in out)

        await wait_for(waiting, f"a retry after attempt {attempts}")
        await self.runtime.store.fire_timers(time.time() + 60)


async def start_wa(
    aiohttp_server: AiohttpServer,
    valkey_url: str,
    tmp_path: Path,
    flows: Mapping[str, str],
    separate_sandbox: dict[str, Any] | None = None,
    others: Mapping[str, Any] | None = None,
    **channel_options: Any,
) -> WA:
    """Chasqui on its sandbox, serving ``flows``; ``separate_sandbox``: SandboxConfig options
    for a sandbox app on its own port instead of the mounted one; ``others``: more channels
    (name -> settings) beside ``whatsapp``. The caller closes ``WA.http``."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    graph_url, sandbox_url = "sandbox", f"{base}/_sandbox/whatsapp"
    if separate_sandbox is not None:
        sandbox_port = free_port()
        sandbox_config = SandboxConfig(
            app_secret=SECRET,
            verify_token=VERIFY,
            access_tokens={ACCESS},
            waba_id=WABA,
            numbers=[SandboxNumber(PNID, DISPLAY, base + WEBHOOK)],
            admin_token=ADMIN,
            **separate_sandbox,
        )
        await aiohttp_server(create_sandbox_app(sandbox_config), port=sandbox_port)
        graph_url = sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    channel = {
        "type": "whatsapp",
        "graph_url": graph_url,
        "phone_number_id": PNID,
        "waba_id": WABA,
        "display_phone_number": DISPLAY,
        "access_token": ACCESS,
        "app_secret": SECRET,
        "verify_token": VERIFY,
        "max_mps": 0,
        **channel_options,
    }
    config = app_config(
        tmp_path,
        valkey_url,
        flows,
        server={"host": "127.0.0.1", "port": port, "admin_token": ADMIN},
        channels={"whatsapp": channel, **(others or {})},
    )
    runtime = Runtime(config)
    await aiohttp_server(create_app(config, runtime), port=port)
    return WA(aiohttp.ClientSession(), runtime, base, sandbox_url)


MakeWA = Callable[..., Awaitable[WA]]
"""The ``make_wa`` fixture (tests/conftest.py)."""
