"""The stateless baseline of issue 12: a minimal aiohttp WhatsApp echo bot, no state, no durability.

It checks ``X-Hub-Signature-256`` over the raw body as Chasqui does, answers 200 at once, and in the
background POSTs ``Recibido: <text>`` for every inbound text message to the Graph API stand-in (one
kept-alive session). Nothing is stored: a crash loses whatever was acknowledged and not yet sent.

Usage:  python bench/echo.py --port P --graph-url http://127.0.0.1:S --app-secret X --token T
                             --phone-number-id ID
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
from typing import Any

from aiohttp import ClientSession, web


def make_app(graph_url: str, app_secret: str, token: str, phone_number_id: str) -> web.Application:
    url = f"{graph_url.rstrip('/')}/v21.0/{phone_number_id}/messages"
    secret = app_secret.encode()
    pending: set[asyncio.Task[None]] = set()
    app = web.Application()

    async def reply(session: ClientSession, to: str, text: str) -> None:
        body = {"messaging_product": "whatsapp", "to": to, "type": "text"}
        body["text"] = {"body": f"Recibido: {text}"}  # type: ignore[assignment]
        async with session.post(url, json=body) as response:
            await response.read()

    async def webhook(request: web.Request) -> web.Response:
        raw = await request.read()
        scheme, _, given = request.headers.get("X-Hub-Signature-256", "").partition("=")
        expected = hmac.new(secret, raw, hashlib.sha256).hexdigest()
        if scheme != "sha256" or not hmac.compare_digest(expected, given.lower()):
            return web.Response(status=401)
        session: ClientSession = app["session"]
        payload: dict[str, Any] = json.loads(raw)
        for entry in payload.get("entry", []):
            for change in entry.get("changes", []):
                for message in change.get("value", {}).get("messages", []):
                    if message.get("type") == "text":
                        task = asyncio.create_task(
                            reply(session, message["from"], message["text"]["body"])
                        )
                        pending.add(task)
                        task.add_done_callback(pending.discard)
        return web.Response(status=200)

    async def session_ctx(app: web.Application) -> Any:
        headers = {"Authorization": f"Bearer {token}"}
        async with ClientSession(headers=headers) as session:
            app["session"] = session
            yield

    app.cleanup_ctx.append(session_ctx)
    app.router.add_post("/webhook", webhook)
    app.router.add_get("/healthz", lambda _: asyncio.sleep(0, web.Response(text="ok")))
    return app


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--graph-url", required=True)
    p.add_argument("--app-secret", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--phone-number-id", required=True)
    a = p.parse_args()
    app = make_app(a.graph_url, a.app_secret, a.token, a.phone_number_id)
    web.run_app(app, host="127.0.0.1", port=a.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
