"""The Telegram Bot API channel: updates in, messages out, the webhook registered.

The protocol (update shapes, call bodies, error classes) lives in the pure modules beside this
one; this class does the I/O: it checks the secret header and parses an update into the channel
protocol's typed events (the core creates contacts, deduplicates by ``update_id``, queues),
answers a button tap's callback query once the tap is queued, and sends through one aiohttp
session, after waiting for the chat's and the bot's turn of the shared rate limits.

The bot token is part of every Bot API URL: nothing here logs a URL, and a message that could
carry one has the token blanked first.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import mimetypes
import time
from dataclasses import replace
from typing import Any

import aiohttp
from aiohttp import web

from channels.protocol import (
    Capabilities,
    Channel,
    ChannelConfig,
    ChannelHost,
    Inbound,
    Message,
    RateLimit,
    SendResult,
    WebhookError,
    loads,
    parse_duration,
    read_settings,
)
from channels.telegram.config import TelegramConfig
from channels.telegram.errors import classify, classify_exception
from channels.telegram.outbound import BUTTONS_MAX, OutboundError, build_call
from channels.telegram.updates import ALLOWED_UPDATES, BadUpdate, ButtonTap, parse_update

log = logging.getLogger("chasqui.telegram")

MAX_WEBHOOK_BYTES = 1024 * 1024  # one update; Telegram's are a few KB
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
CAPABILITIES = Capabilities(
    schemes=("telegram",),
    buttons=BUTTONS_MAX,
    media=True,
    window=None,  # no 24-hour rule; but a bot may only write to whoever started it (403)
    redelivery=86400,  # Telegram keeps an unanswered update at most 24 hours
)


class TelegramChannel(Channel):
    TYPE = "telegram"
    CAPABILITIES = CAPABILITIES  # the bot's rate comes from its ``max_mps``

    def __init__(self, name: str, config: ChannelConfig, host: ChannelHost) -> None:
        super().__init__(name, config, host)
        self.settings = read_settings(TelegramConfig, config)
        self._token = self.settings.bot_token.get_secret_value()
        self._secret = self.settings.secret_token.get_secret_value().encode()
        self._session: aiohttp.ClientSession | None = None
        self._problem: str | None = None  # a refused token, cleared by a success
        self._background: set[asyncio.Task[None]] = set()
        s = self.settings
        self._bot_rate = RateLimit(s.max_mps, burst=max(1.0, s.max_mps)) if s.max_mps else None
        self._chat_rate = RateLimit(s.chat_mps, burst=s.chat_burst) if s.chat_mps else None
        self._capabilities = replace(CAPABILITIES, rate=self._bot_rate)

    # -- lifetime ----------------------------------------------------------------------------
    @classmethod
    def validate(cls, config: ChannelConfig) -> None:
        read_settings(TelegramConfig, config)

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.settings.concurrency),
            timeout=aiohttp.ClientTimeout(total=parse_duration(self.settings.request_timeout)),
        )

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def health(self) -> dict[str, Any]:
        if self._problem:
            return {"status": "unhealthy", "reason": self._problem}
        return {"status": "ok"}

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "channel not started"
        return self._session

    def _url(self, method: str) -> str:
        return f"{self.settings.api_url}/bot{self._token}/{method}"

    def _blank(self, text: str) -> str:
        return text.replace(self._token, "<bot_token>")

    async def call(self, method: str, body: dict[str, Any]) -> tuple[int, Any]:
        """One Bot API call: (HTTP status, JSON body or None). Raises aiohttp/timeout errors."""
        async with self.session.post(self._url(method), json=body) as response:
            try:
                data = await response.json(content_type=None)
            except ValueError:
                data = None
            return response.status, data

    # -- webhooks in -------------------------------------------------------------------------
    async def parse(self, request: web.Request) -> Inbound:
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not hmac.compare_digest(given, self._secret):
            log.warning("webhook for %s refused: missing or wrong secret token", self.name)
            raise WebhookError(401, "bad_secret", f"missing or wrong {SECRET_HEADER}")
        if request.method != "POST":
            raise WebhookError(405, "method_not_allowed", "Telegram posts its updates")
        if (request.content_length or 0) > MAX_WEBHOOK_BYTES:
            raise _too_large()
        raw = await _read_capped(request, MAX_WEBHOOK_BYTES + 1)
        if len(raw) > MAX_WEBHOOK_BYTES:
            raise _too_large()
        try:
            parsed = parse_update(loads(raw), self.name, time.time())
        except BadUpdate as exc:
            raise WebhookError(400, "bad_request", str(exc)) from None
        except ValueError:  # NaN, nesting too deep: not JSON either
            raise WebhookError(400, "bad_request", "the body is not valid JSON") from None
        if parsed.skipped:
            log.info("webhook for %s: skipped %s", self.name, parsed.skipped)
        return Inbound([parsed.message] if parsed.message else [])

    async def accepted(self, message: Message) -> None:
        """A tap is queued: stop the button's spinner, in the background."""
        if isinstance(message, ButtonTap) and message.callback_id:
            task = asyncio.create_task(self._answer_callback(message.callback_id))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _answer_callback(self, query_id: str) -> None:
        """Best effort: the tap is queued whatever Telegram says here."""
        try:
            status, data = await self.call("answerCallbackQuery", {"callback_query_id": query_id})
            if status != 200:
                log.info("answerCallbackQuery refused (%s): %s", status, _description(data))
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.info("answerCallbackQuery failed: %s", self._blank(str(exc)))

    async def fetch_media(self, media_id: str) -> tuple[bytes, str] | None:
        """An inbound file by its file id: ``getFile`` names its path, which we download."""
        if not self.MEDIA_ID.fullmatch(media_id):
            return None
        status, data = await self.call("getFile", {"file_id": media_id})
        result = data.get("result") if isinstance(data, dict) else None
        path = result.get("file_path") if isinstance(result, dict) else None
        if status != 200 or not isinstance(path, str) or ".." in path:
            return None
        url = f"{self.settings.api_url}/file/bot{self._token}/{path}"
        async with self.session.get(url) as response:
            if response.status != 200:
                return None
            content = await response.read()
            mime = mimetypes.guess_type(path)[0] or response.content_type
        return content, mime or "application/octet-stream"

    # -- sends out ---------------------------------------------------------------------------
    async def send(self, message: dict[str, Any]) -> SendResult:
        try:
            call = build_call(message)
        except OutboundError as exc:
            return SendResult(False, error={"code": exc.code, "message": str(exc)})
        # after the checks, so a refused message costs no turn; the chat's first, so a chat
        # that waits holds no turn of the bot's
        if self._chat_rate is not None:
            bucket = f"telegram:{self.settings.bot_id}:{call.chat_id}"
            await self.host.throttle(bucket, self._chat_rate)
        if self._bot_rate is not None:
            await self.host.throttle(f"telegram:{self.settings.bot_id}", self._bot_rate)
        attempt = int(message.get("attempt", 1)) - 1
        try:
            status, data = await self.call(call.method, call.body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return classify_exception(exc, attempt=attempt)
        if status == 200 and isinstance(data, dict) and data.get("ok") is True:
            result = data.get("result")
            message_id = result.get("message_id") if isinstance(result, dict) else None
            if message_id is not None:
                self._problem = None
                return SendResult(True, external_id=f"{call.chat_id}:{message_id}")
        outcome = classify(status, data, attempt=attempt)
        if outcome.error and outcome.error.get("kind") == "credentials":
            self._problem = str(outcome.error["message"])
            log.error("Telegram channel %s: %s", self.name, self._problem)
        return outcome

    # -- setup -------------------------------------------------------------------------------
    async def register_webhook(self, url: str) -> str:
        """``getMe`` (the token works, and whose it is), then ``setWebhook``: Telegram posts
        our updates to ``url`` with the secret header."""
        body = {
            "url": url,
            "secret_token": self._secret.decode(),
            "allowed_updates": list(ALLOWED_UPDATES),
        }
        try:
            status, me = await self.call("getMe", {})
            if status != 200 or not isinstance(me, dict) or me.get("ok") is not True:
                raise ValueError(f"Telegram refused the bot token ({status}): {_description(me)}")
            status, data = await self.call("setWebhook", body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ValueError(
                f"cannot reach {self.settings.api_url}: {self._blank(str(exc))}"
            ) from None
        if status != 200 or not isinstance(data, dict) or data.get("ok") is not True:
            raise ValueError(f"setWebhook refused ({status}): {_description(data)}")
        result = me.get("result")
        username = result.get("username") if isinstance(result, dict) else None
        bot = f"@{username}" if username else f"bot {self.settings.bot_id}"
        return f"Telegram posts {bot}'s updates to {url} ({', '.join(ALLOWED_UPDATES)})"


def _description(data: Any) -> str:
    return str(data.get("description")) if isinstance(data, dict) else "no JSON answer"


async def _read_capped(request: web.Request, limit: int) -> bytes:
    """At most ``limit`` bytes of the body (one ``read(n)`` returns what has arrived so far)."""
    raw = bytearray()
    while len(raw) < limit and (chunk := await request.content.read(limit - len(raw))):
        raw += chunk
    return bytes(raw)


def _too_large() -> WebhookError:
    return WebhookError(413, "body_too_large", f"an update is at most {MAX_WEBHOOK_BYTES} bytes")
