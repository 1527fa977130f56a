"""A stand-in for the system behind an HTTP channel's ``send_url``, on loopback.

It checks every post's Standard Webhooks signature with its own few lines of ``hmac`` (not the
channel's code: a test must not grade the channel with the channel) and records what came;
``answers`` scripts the HTTP statuses of the next posts (then 200). :func:`signed_post` is the
other direction: a system posting a signed message to Chasqui.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

# 32 random bytes, as the docs tell operators to make one
SECRET = "whsec_" + base64.b64encode(b"chasqui-tests-http-channel-key-1").decode()
KEY = base64.b64decode(SECRET.removeprefix("whsec_"))

# the tests' channel is named ``web``; its flow answers what it is told
WEBHOOK = "/webhooks/http/web"

ECHO = """\
name: Web echo
nodes:
  - id: hello
    send_message: {text: "Hola @contact.first_name", quick_replies: ["Sí", "No"]}
    next: ask
  - id: ask
    wait_for_reply:
      result: said
      other: {category: Other, next: answer}
  - id: answer
    send_message: {text: "got @input.text"}
    next: ask
"""


def signature(webhook_id: str, timestamp: int | str, body: bytes, key: bytes = KEY) -> str:
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


@dataclass
class Post:
    webhook_id: str
    timestamp: int
    verified: bool
    body: dict[str, Any]
    status: int  # what the receiver answered
    at: float  # when it came (this host's clock)


@dataclass
class Receiver:
    key: bytes = KEY
    posts: list[Post] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)  # statuses for the next posts, then 200

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        webhook_id = request.headers.get("webhook-id", "")
        stamp = request.headers.get("webhook-timestamp", "0")
        given = request.headers.get("webhook-signature", "").split()
        expected = signature(webhook_id, stamp, raw, self.key)
        verified = any(hmac.compare_digest(expected, s) for s in given) and (
            abs(time.time() - int(stamp)) <= 300
        )
        status = self.answers.pop(0) if self.answers else 200
        post = Post(webhook_id, int(stamp), verified, json.loads(raw), status, time.time())
        self.posts.append(post)
        return web.json_response({"ok": status == 200}, status=status)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/chasqui", self.handle)
        app.router.add_get("/posts", self.list_posts)
        return app

    async def list_posts(self, request: web.Request) -> web.Response:
        return web.json_response([p.__dict__ for p in self.posts])

    @property
    def delivered(self) -> list[Post]:
        """The posts answered 200, in order; every post so far must have been signed right."""
        forged = [p for p in self.posts if not p.verified]
        assert not forged, f"post(s) with a bad signature: {forged}"
        return [p for p in self.posts if p.status == 200]

    async def texts(self) -> list[str]:
        """The texts delivered (for ``wait_for``)."""
        return [p.body["text"] for p in self.delivered]


async def signed_post(
    http: aiohttp.ClientSession,
    url: str,
    body: Any,
    *,
    webhook_id: str,
    timestamp: float | None = None,
    key: bytes = KEY,
    raw: bytes | None = None,
) -> tuple[int, Any]:
    """POST ``body`` (JSON, or ``raw`` bytes) signed as a sender would; ``(status, JSON)``."""
    data = raw if raw is not None else json.dumps(body).encode()
    stamp = int(time.time() if timestamp is None else timestamp)
    headers = {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": signature(webhook_id, stamp, data, key),
    }
    async with http.post(url, data=data, headers=headers) as response:
        text = await response.text()
        return response.status, (
            json.loads(text) if response.content_type.endswith("json") else text
        )


def main() -> None:
    parser = argparse.ArgumentParser(description="a send_url stand-in: POST /chasqui, GET /posts")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8096)
    args = parser.parse_args()
    web.run_app(Receiver().app(), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
