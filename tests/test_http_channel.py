"""The signed HTTP channel over real HTTP: a system posts signed messages to Chasqui, and the
flow's answers are posted, signed, to a stand-in of that system (tests/support/receiver.py),
which checks every signature itself."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis

from bot.core.config import ChannelConfig
from channels.http import HttpChannel
from channels.protocol import RateLimit
from tests.support.api import Api, MakeApi
from tests.support.receiver import ECHO, SECRET, WEBHOOK, Receiver, signed_post
from tests.support.serve import free_port
from tests.support.waiting import wait_for

AiohttpServer = Callable[..., Awaitable[TestServer]]


class Web:
    """Chasqui with one http channel ``web`` whose send_url is the receiver."""

    def __init__(self, api: Api, receiver: Receiver) -> None:
        self.api, self.receiver = api, receiver

    async def post(self, body: Any, webhook_id: str, **kwargs: Any) -> tuple[int, Any]:
        url = str(self.api.client.make_url(WEBHOOK))
        return await signed_post(
            self.api.client.session, url, body, webhook_id=webhook_id, **kwargs
        )

    async def says(self, sender: str, text: str, webhook_id: str, **kwargs: Any) -> None:
        body = {"id": webhook_id, "from": sender, "text": text, "name": "Ana Souza"}
        assert await self.post(body, webhook_id, **kwargs) == (200, "ok")

    async def contact(self, sender: str) -> str:
        found = await wait_for(
            lambda: self.api.store.contact_id_for_urn(f"ext:{sender}"), f"contact ext:{sender}"
        )
        return str(found)

    async def start(self, sender: str) -> str:
        cid = await self.contact(sender)
        status, _ = await self.api.post(f"/api/v1/contacts/{cid}/start", {"flow": "echo"})
        assert status in (200, 201, 202)
        return cid

    async def answers(self, count: int) -> list[str]:
        async def enough() -> list[str]:
            texts = await self.receiver.texts()
            return texts if len(texts) >= count else []

        return await wait_for(enough, f"{count} answers at the receiver")


@pytest.fixture
async def web_channel(
    make_api: MakeApi, aiohttp_server: AiohttpServer
) -> Callable[..., Awaitable[Web]]:
    async def make(**settings: Any) -> Web:
        receiver = Receiver()
        server = await aiohttp_server(receiver.app())
        channel = {
            "type": "http",
            "send_url": str(server.make_url("/chasqui")),
            "secret": SECRET,
            "allow_private": True,  # the receiver is on loopback
            "retry_delay": "1s",
            **settings,
        }
        return Web(await make_api({"echo": ECHO}, channels={"web": channel}), receiver)

    return make


async def test_a_signed_message_in_and_the_flows_answers_out(web_channel: Any) -> None:
    web = await web_channel()
    await web.says("crm-42", "hola", "m1")
    cid = await web.start("crm-42")
    contact = await web.api.store.get_contact(cid)
    assert contact is not None and contact["name"] == "Ana Souza"
    assert await web.answers(1) == ["Hola Ana"]
    post = web.receiver.delivered[0]
    assert post.body == {
        "id": post.webhook_id,  # the message's id, also its idempotency key
        "to": "crm-42",
        "text": "Hola Ana",
        "quick_replies": ["Sí", "No"],
    }
    assert abs(post.timestamp - time.time()) < 60
    await web.says("crm-42", "Sí", "m2")  # a tapped quick reply comes back as its title
    await web.says("crm-42", "Sí", "m2")  # a sender's retry: same webhook-id, signed afresh
    await web.says("crm-42", "tres", "m3")
    assert await web.answers(3) == ["Hola Ana", "got Sí", "got tres"]

    async def recorded() -> list[dict[str, Any]]:  # the sender records a send after its POST
        messages = await web.api.store.messages(cid)
        out = [m for m in messages if m["direction"] == "out"]
        return messages if all(m["status"] == "sent" for m in out) else []

    messages = await wait_for(recorded, "every answer recorded as sent")
    inbound = [m for m in messages if m["direction"] == "in"]
    assert sorted(m["external_id"] for m in inbound) == ["m1", "m2", "m3"]  # m2 once
    sent = [m for m in messages if m["direction"] == "out"]
    assert {m["external_id"] for m in sent} == {p.webhook_id for p in web.receiver.delivered}


async def test_refused_deliveries_store_nothing(web_channel: Any, redis: Redis) -> None:
    web = await web_channel()
    body = {"id": "b1", "from": "bob", "text": "hola"}
    before = sorted(await redis.keys("*"))
    now = time.time()
    refusals: list[tuple[dict[str, Any], int, str]] = [
        ({"timestamp": now - 301}, 401, "stale_timestamp"),
        ({"timestamp": now + 400}, 401, "future_timestamp"),
        ({"key": b"k" * 32}, 401, "bad_signature"),
        ({"raw": b'{"id": "b1", "from": "bob", "text": '}, 400, "invalid_json"),
        ({"raw": b'{"id": "b1", "text": "hola"}'}, 400, "missing_from"),
        ({"raw": b'{"id": "b1", "from": "bob", "text": 3}'}, 400, "invalid_text"),
    ]
    for options, status, code in refusals:
        answer = await web.post(body, "b1", **options)
        assert (answer[0], answer[1]["error"]["code"]) == (status, code), options
    url = web.api.client.make_url(WEBHOOK)
    async with web.api.client.session.post(url, json=body) as response:  # not signed at all
        assert response.status == 401
        assert (await response.json())["error"]["code"] == "missing_webhook_id"
    assert await web.api.store.contact_id_for_urn("ext:bob") is None
    assert sorted(await redis.keys("*")) == before
    assert web.receiver.posts == []
    # the same message, signed now, is taken: the refusals left no dedup key behind
    await web.says("bob", "hola", "b1")
    await web.contact("bob")


async def test_a_failed_post_is_retried_with_the_same_id_then_delivered(web_channel: Any) -> None:
    web = await web_channel()
    web.receiver.answers = [500]
    await web.says("ana", "hola", "r1")
    cid = await web.start("ana")
    assert await web.answers(1) == ["Hola Ana"]
    first, second = web.receiver.posts
    assert (first.status, second.status) == (500, 200)
    assert first.webhook_id == second.webhook_id and first.body == second.body

    async def sent() -> list[dict[str, Any]]:
        out = [m for m in await web.api.store.messages(cid) if m["direction"] == "out"]
        return out if out and out[0]["status"] == "sent" else []

    [message] = await wait_for(sent, "the message recorded as sent")
    assert message["external_id"] == first.webhook_id


async def test_a_refusal_fails_the_message_for_good_with_the_receivers_reason(
    web_channel: Any,
) -> None:
    web = await web_channel()
    web.receiver.answers = [404]
    await web.says("ana", "hola", "f1")
    cid = await web.start("ana")

    async def failed() -> list[dict[str, Any]]:
        out = [m for m in await web.api.store.messages(cid) if m["direction"] == "out"]
        return out if out and out[0]["status"] == "failed" else []

    [message] = await wait_for(failed, "the message failed")
    assert message["error"]["code"] == "http_404"
    assert message["error"]["message"].startswith("the receiver refused the message with HTTP 404")
    assert len(web.receiver.posts) == 1  # not retried


# -- the channel alone: what cannot be reached ---------------------------------------------------
class NoHost:
    async def templates(self, channel: str) -> list[dict[str, Any]]:
        return []

    async def save_templates(self, channel: str, templates: Any) -> None:
        return None

    async def throttle(self, bucket: str, rate: RateLimit) -> None:
        return None


def channel(send_url: str, **settings: Any) -> HttpChannel:
    config = {"type": "http", "send_url": send_url, "secret": SECRET, **settings}
    return HttpChannel("web", ChannelConfig.model_validate(config), NoHost())


MESSAGE = {"uuid": "u1", "urn": "ext:ana", "text": "hola"}


async def test_send_url_on_a_private_address_is_refused_unless_allowed(
    aiohttp_server: AiohttpServer,
) -> None:
    receiver = Receiver()
    server = await aiohttp_server(receiver.app())
    url = f"http://localhost:{server.port}/chasqui"  # a name: the resolver sees 127.0.0.1
    guarded = channel(url)
    await guarded.start()
    try:
        result = await guarded.send(MESSAGE)
        assert not result.ok and result.retry_after is None
        assert result.error is not None and result.error["code"] == "blocked_address"
        assert "allow_private = true" in result.error["message"]
        assert guarded.health()["status"] == "unhealthy"
    finally:
        await guarded.close()
    allowed = channel(url, allow_private=True)
    await allowed.start()
    try:
        assert (await allowed.send(MESSAGE)).ok
        assert [p.body["text"] for p in receiver.delivered] == ["hola"]
    finally:
        await allowed.close()


async def test_timeouts_and_unreachable_receivers_are_retried(
    aiohttp_server: AiohttpServer,
) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response()

    app = web.Application()
    app.router.add_post("/slow", slow)
    server = await aiohttp_server(app)
    for url, code in (
        (str(server.make_url("/slow")), "timeout"),
        (f"http://127.0.0.1:{free_port()}/x", "network_error"),
    ):
        sender = channel(url, allow_private=True, request_timeout="1s", retry_delay="3s")
        await sender.start()
        try:
            result = await sender.send({**MESSAGE, "attempt": 2})
        finally:
            await sender.close()
        assert not result.ok and result.error is not None
        assert (result.error["code"], result.error["kind"]) == (code, "retry")
        assert result.retry_after == 6.0  # the second attempt waits twice the first delay
