"""The signed HTTP channel: any system (a web chat, an app, another bot) talks to Chasqui.

In: ``POST /webhooks/http/<name>`` with a Standard Webhooks signature; the ``webhook-id`` is the
event id the core deduplicates by. Out: each message POSTed to ``send_url``, signed the same
way, with the message's id as ``webhook-id`` on every attempt (so the receiver can drop a
repeat) and a fresh timestamp. docs/channels/http.md is the contract for the other side.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web

from channels.http.config import HttpConfig
from channels.http.outcomes import answered, refused, unreachable
from channels.http.payloads import PayloadError, Unsendable, outgoing, parse_incoming
from channels.http.signing import SignatureError, sign, verify
from channels.protocol import (
    BlockedAddress,
    Capabilities,
    Channel,
    ChannelConfig,
    ChannelHost,
    Inbound,
    Message,
    PublicOnlyResolver,
    SendResult,
    WebhookError,
    parse_duration,
    read_settings,
)

log = logging.getLogger("chasqui.http")

MAX_BODY = 64 * 1024  # one text message and its envelope
ANSWER_BYTES = 2048  # of the receiver's answer, read to quote it in an error
CAPABILITIES = Capabilities(
    schemes=("ext",),
    buttons=10,  # quick replies travel as a list of titles; a flow may write up to 10
    # Standard Webhooks senders retry for a day or two, re-signed each time: a webhook-id seen
    # within 3 days is a repeat
    redelivery=3 * 86400,
)


class HttpChannel(Channel):
    TYPE = "http"
    CAPABILITIES = CAPABILITIES

    def __init__(
        self,
        name: str,
        config: ChannelConfig,
        host: ChannelHost,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(name, config, host)
        self.settings = _settings(config)
        self._key = self.settings.key
        self._retry_base = float(parse_duration(self.settings.retry_delay))
        self._session: aiohttp.ClientSession | None = None
        self._problem: str | None = None  # a blocked send_url, cleared by a delivery
        self.clock = clock

    @classmethod
    def validate(cls, config: ChannelConfig) -> None:
        _settings(config)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            headers={"User-Agent": "Chasqui"},
            connector=aiohttp.TCPConnector(
                limit=self.settings.concurrency,
                resolver=None if self.settings.allow_private else PublicOnlyResolver(),
            ),
            timeout=aiohttp.ClientTimeout(total=parse_duration(self.settings.request_timeout)),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def health(self) -> dict[str, Any]:
        if self._problem:
            return {"status": "unhealthy", "reason": self._problem}
        return {"status": "ok"}

    # -- in ----------------------------------------------------------------------------------
    async def parse(self, request: web.Request) -> Inbound:
        if request.method != "POST":
            raise WebhookError(405, "method_not_allowed", "POST a signed message")
        if (request.content_length or 0) > MAX_BODY:
            raise _too_large()
        raw = await request.read()  # a chunked body is capped by server.max_body_bytes
        if len(raw) > MAX_BODY:
            raise _too_large()
        try:
            webhook_id, timestamp = verify(self._key, request.headers, raw, self.clock())
        except SignatureError as exc:
            log.warning("webhook for %s refused: %s", self.name, exc.code)
            raise WebhookError(401, exc.code, exc.message) from None
        try:
            incoming = parse_incoming(raw)
        except PayloadError as exc:
            raise WebhookError(400, exc.code, exc.message) from None
        log.debug("%s: message %s arrived as %s", self.name, incoming.id, webhook_id)
        message = Message(
            self.name,
            incoming.urn,
            webhook_id,  # the idempotency key: a repeat is dropped by the core
            float(timestamp),
            incoming.text,
            contact_name=incoming.name,
        )
        return Inbound([message])

    # -- out ---------------------------------------------------------------------------------
    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "channel not started"
        return self._session

    async def send(self, message: dict[str, Any]) -> SendResult:
        attempt = int(message.get("attempt", 1))
        try:
            body = outgoing(message)
        except Unsendable as exc:
            return refused(exc.code, exc.message)
        headers = {
            "Content-Type": "application/json",
            **sign(self._key, message["uuid"], body, self.clock()),
        }
        try:
            async with self.session.post(
                self.settings.send_url, data=body, headers=headers, allow_redirects=False
            ) as response:
                said = await response.content.read(ANSWER_BYTES)
                result = answered(
                    response.status,
                    said.decode("utf-8", "replace"),
                    message_id=message["uuid"],
                    attempt=attempt,
                    base=self._retry_base,
                    retry_after=response.headers.get("Retry-After"),
                )
        except BlockedAddress as exc:
            self._problem = f"send_url refused: {exc} (allow_private = true lets it through)"
            log.error("http channel %s: %s", self.name, self._problem)
            return refused("blocked_address", self._problem)
        except TimeoutError:
            timeout = self.settings.request_timeout
            detail = f"no answer from send_url within {timeout}"
            return unreachable("timeout", detail, attempt=attempt, base=self._retry_base)
        except (aiohttp.ClientError, OSError) as exc:
            detail = f"cannot reach send_url: {type(exc).__name__}: {exc}".rstrip(": ")
            return unreachable("network_error", detail, attempt=attempt, base=self._retry_base)
        if result.ok:
            self._problem = None
        return result


def _settings(config: ChannelConfig) -> HttpConfig:
    return read_settings(HttpConfig, config)


def _too_large() -> WebhookError:
    return WebhookError(413, "body_too_large", f"a message is at most {MAX_BODY} bytes")
