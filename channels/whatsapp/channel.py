"""The WhatsApp Cloud API channel: webhooks in, sends out, templates synced and checked.

The protocol itself (payload shapes, error codes, template rules) lives in the pure modules
beside this one; this class does the I/O: the webhook endpoint, one aiohttp session per number
with bounded concurrency, the shared per-number rate limit, and the template cache.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any, ClassVar

import aiohttp
from aiohttp import web
from pydantic import ValidationError
from redis.exceptions import RedisError

from bot.core.config import ChannelConfig
from bot.core.durations import parse_duration
from bot.core.jsonin import loads
from bot.core.validation import summary
from bot.store import Store
from channels.protocol import Channel, SendResult
from channels.whatsapp.config import WhatsAppConfig
from channels.whatsapp.protocol import (
    InboundMessage,
    OutboundError,
    TemplateInfo,
    WebhookBatch,
    build_mark_read,
    build_send,
    check_template_params,
    classify_error,
    classify_failed_status,
    normalise_language,
    parse_send_response,
    parse_template,
    parse_template_page,
    parse_webhook,
    valid_signature,
    verify_challenge,
)

log = logging.getLogger("chasqui.whatsapp")

MAX_WEBHOOK_BYTES = 1024 * 1024  # Meta's payloads reach 3 MB only for huge batches; we refuse
DEDUP_TTL = 7 * 86400  # Meta redelivers for up to 7 days
WINDOW = 24 * 3600
CREDENTIALS_RETRY = 300.0  # seconds between tries while Meta refuses our token
# credentials problems an operator fixes in minutes (not an account restriction or a lock)
FIXABLE_CREDENTIALS = {
    "auth_failed",
    "permission_denied",
    "access_token_invalid",
    "capability_missing",
}


class WhatsAppChannel(Channel):
    TYPE = "whatsapp"
    SCHEMES = ("whatsapp",)
    WINDOW = WINDOW
    TEMPLATES = True
    MEDIA_ID = re.compile(r"[0-9]{1,32}")  # Meta's media ids are digits (webhooks, uploads)
    # phone_number_id -> channel: Meta posts every number of an app to one callback URL
    _by_number: ClassVar[dict[str, WhatsAppChannel]] = {}

    def __init__(self, name: str, config: ChannelConfig, store: Store) -> None:
        super().__init__(name, config, store)
        self.settings = _settings(config)
        self.graph_base = self.settings.graph_url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None
        self._templates: dict[tuple[str, str], TemplateInfo] = {}
        self._languages: dict[str, list[str]] = {}
        self._problem: str | None = None  # set by a credentials error, cleared by a success
        self._sync_task: asyncio.Task[None] | None = None
        self._resync: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        # One coroutine at a time asks Redis for this number's next turn: concurrent sends
        # (batch x send loops) would otherwise each hold a pooled connection while polling
        # and exhaust redis-py's pool (MaxConnectionsError -> the send failed for good).
        self._turn = asyncio.Lock()

    # -- lifetime ----------------------------------------------------------------------------
    @classmethod
    def validate(cls, config: ChannelConfig) -> None:
        _settings(config)

    @classmethod
    def sub_apps(
        cls, name: str, config: ChannelConfig, base_url: str
    ) -> list[tuple[str, web.Application]]:
        """With ``graph_url = "sandbox"``, this server also serves a Graph API stand-in."""
        s = _settings(config)
        if not s.sandbox:
            return []
        from channels.whatsapp.sandbox import SandboxConfig, SandboxNumber, create_sandbox_app

        number = SandboxNumber(
            s.phone_number_id,
            s.display_phone_number or "15550142200",
            f"{base_url}/webhooks/whatsapp/{name}",
        )
        sandbox = SandboxConfig(
            app_secret=s.app_secret.get_secret_value(),
            verify_token=s.verify_token.get_secret_value(),
            access_tokens={s.access_token.get_secret_value()},
            waba_id=s.waba_id,
            numbers=[number],
        )
        return [(sandbox_prefix(name), create_sandbox_app(sandbox))]

    async def start(self) -> None:
        if self.settings.sandbox:
            self.graph_base = self.base_url + sandbox_prefix(self.name)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.settings.concurrency),
            headers={"Authorization": f"Bearer {self.settings.access_token.get_secret_value()}"},
            timeout=aiohttp.ClientTimeout(total=parse_duration(self.settings.request_timeout)),
        )
        WhatsAppChannel._by_number[self.settings.phone_number_id] = self
        await self.load_templates()
        self._sync_task = asyncio.create_task(self._sync_forever())

    async def close(self) -> None:
        for task in (self._sync_task, self._resync, *self._background):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if WhatsAppChannel._by_number.get(self.settings.phone_number_id) is self:
            del WhatsAppChannel._by_number[self.settings.phone_number_id]
        if self._session is not None:
            await self._session.close()

    def health(self) -> dict[str, Any]:
        if self._problem:
            return {"status": "unhealthy", "reason": self._problem}
        return {"status": "ok"}

    def _url(self, path: str) -> str:
        return f"{self.graph_base}/{self.settings.api_version}/{path}"

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "channel not started"
        return self._session

    # -- webhooks in -------------------------------------------------------------------------
    async def handle_webhook(self, request: web.Request) -> web.StreamResponse:
        if request.method == "GET":
            challenge = verify_challenge(
                request.query, self.settings.verify_token.get_secret_value()
            )
            if challenge is None:
                return web.Response(status=403, text="Forbidden")
            return web.Response(text=challenge, content_type="text/plain")
        if (request.content_length or 0) > MAX_WEBHOOK_BYTES:
            return web.Response(status=413, text="payload too large")
        raw = await _read_capped(request, MAX_WEBHOOK_BYTES + 1)
        if len(raw) > MAX_WEBHOOK_BYTES:
            return web.Response(status=413, text="payload too large")
        secret = self.settings.app_secret.get_secret_value()
        if not valid_signature(raw, request.headers.get("X-Hub-Signature-256"), secret):
            log.warning("webhook for %s refused: missing or wrong signature", self.name)
            return web.Response(status=401, text="bad signature")
        try:
            payload = loads(raw)  # NaN/Infinity or nesting too deep: not JSON either
        except ValueError:
            return web.Response(status=400, text="not JSON")
        batch = parse_webhook(payload)
        for note in batch.skipped:
            log.info("webhook for %s: skipped %s", self.name, note)
        try:
            await self._accept(batch)
        except RedisError:
            # nothing was lost: Meta redelivers what we do not acknowledge
            log.exception("could not queue a webhook for %s; asking Meta to redeliver", self.name)
            return web.Response(status=503, text="try again")
        return web.Response(text="ok")

    async def _accept(self, batch: WebhookBatch) -> None:
        for message in batch.messages:
            channel = self._by_number.get(message.phone_number_id, self)
            await channel._accept_message(message)
        by_channel: dict[str, list[tuple[str, str, float, dict[str, Any] | None]]] = {}
        for status in batch.statuses:
            channel = self._by_number.get(status.phone_number_id, self)
            error = classify_failed_status(status).as_error() if status.status == "failed" else None
            by_channel.setdefault(channel.name, []).append(
                (status.wamid, status.status, float(status.timestamp), error)
            )
        for name, statuses in by_channel.items():
            results = await self.store.apply_statuses(name, statuses)
            unknown = sum(1 for r in results if r == "unknown")
            if unknown:
                log.debug("%d status(es) for messages %s does not know", unknown, name)
        for update in batch.template_updates:
            await self._template_status(
                update.name, update.language, update.event, update.reason, update.rejection_info
            )
        for detail in batch.errors:
            log.warning("WhatsApp reports an error on %s: %s", self.name, detail)

    async def _accept_message(self, message: InboundMessage) -> None:
        """Create the contact if new, then queue the message once (Meta redelivers)."""
        cid = await self.store.ensure_contact(
            message.urn, message.profile_name or "", float(message.timestamp)
        )
        event: dict[str, Any] = {
            "type": "reply",
            "text": message.text or "",
            "channel": self.name,
            "urn": message.urn,
            "external_id": message.wamid,
            "msg_type": message.type,
            "sent_at": float(message.timestamp),
            "at": float(message.timestamp),
        }
        if message.payload:
            event["payload"] = message.payload
        if message.media:
            event["media"] = {k: v for k, v in asdict(message.media).items() if v}
        if message.location:
            event["location"] = {k: v for k, v in asdict(message.location).items() if v}
        if message.context and message.context.id:
            event["reply_to"] = message.context.id
        if message.reaction:
            event["reaction"] = asdict(message.reaction)
        if message.contacts:
            event["contacts"] = message.contacts
        if not message.is_reply:
            event["record_only"] = True
        queued = await self.store.enqueue_once(
            f"wa:{self.name}:{message.wamid}", DEDUP_TTL, cid, event
        )
        if not queued:
            log.debug("duplicate delivery of %s ignored", message.wamid)
        elif self.settings.mark_read and message.is_reply:
            task = asyncio.create_task(self._mark_read(message.wamid))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _mark_read(self, wamid: str) -> None:
        """Blue ticks: best effort, after the message is safely queued; never fails the ack."""
        try:
            async with self.session.post(
                self._url(f"{self.settings.phone_number_id}/messages"), json=build_mark_read(wamid)
            ) as response:
                if response.status != 200:
                    log.info("mark-as-read of %s refused (%s)", wamid, response.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.info("mark-as-read of %s failed: %s", wamid, exc)

    async def fetch_media(self, media_id: str) -> tuple[bytes, str] | None:
        """Meta keeps inbound media for a while: its metadata gives a URL that takes our token."""
        if not self.MEDIA_ID.fullmatch(media_id):  # never another Graph path with our token
            return None
        async with self.session.get(self._url(media_id)) as response:
            if response.status != 200:
                return None
            meta = await _json_or_none(response)
        if not isinstance(meta, dict) or not isinstance(meta.get("url"), str):
            return None
        async with self.session.get(meta["url"]) as response:
            if response.status != 200:
                return None
            content = await response.read()
        return content, str(meta.get("mime_type") or response.content_type)

    # -- sends out ---------------------------------------------------------------------------
    async def send(self, message: dict[str, Any]) -> SendResult:
        template = message.get("template")
        info: TemplateInfo | None = None
        if template:
            language = normalise_language(template.get("language")) or ""
            info = self._templates.get((template["name"], language))
            problem = check_template_params(
                info,
                template,
                language=language,
                available_languages=self._languages.get(template["name"], []),
            )
            if problem is not None:
                return SendResult(
                    False,
                    error={
                        "code": problem.code,
                        "message": problem.message,
                        "details": problem.details,
                    },
                )
        try:
            body = build_send(message, template_info=info, list_button=self.settings.list_button)
        except OutboundError as exc:
            return SendResult(False, error={"code": exc.code, "message": str(exc)})
        await self._throttle()
        attempt = int(message.get("attempt", 1)) - 1
        try:
            async with self.session.post(
                self._url(f"{self.settings.phone_number_id}/messages"), json=body
            ) as response:
                data = await _json_or_none(response)
                if response.status == 200:
                    accepted = parse_send_response(data)
                    if accepted is not None:
                        self._problem = None
                        return SendResult(True, external_id=accepted.wamid)
                problem_class = classify_error(response.status, data, attempt=attempt)
        except (aiohttp.ClientError, TimeoutError) as exc:
            problem_class = classify_error(None, None, exc, attempt=attempt)
        if problem_class.kind == "credentials":
            self._problem = f"{problem_class.reason}: {problem_class.message or ''}".strip()
            log.error("WhatsApp channel %s: credentials refused (%s)", self.name, self._problem)
            if problem_class.reason in FIXABLE_CREDENTIALS:
                # a token or a permission is fixed in minutes: hold the message (and the
                # contact's line) rather than fail everything queued meanwhile; after the
                # sender's attempts it fails for good
                return SendResult(
                    False, error=problem_class.as_error(), retry_after=CREDENTIALS_RETRY
                )
        if problem_class.retryable:
            return SendResult(
                False, error=problem_class.as_error(), retry_after=problem_class.retry_after or 1.0
            )
        return SendResult(False, error=problem_class.as_error())

    async def _throttle(self) -> None:
        """Wait for this number's turn: the rate is shared by every process through Redis."""
        mps = self.settings.max_mps
        if mps <= 0:
            return
        async with self._turn:
            while (
                wait := await self.store.rate_wait(
                    self.settings.phone_number_id, mps, burst=max(1.0, mps / 10)
                )
            ) > 0:
                await asyncio.sleep(wait)

    # -- templates ---------------------------------------------------------------------------
    async def sync_templates(self) -> int:
        """Read every page of the number's templates from Meta into Redis; returns how many."""
        try:
            return await self._sync_templates()
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            hint = (
                " (the sandbox runs inside `chasqui serve`: start the server first)"
                if self.settings.sandbox
                else ""
            )
            raise TemplateSyncError(
                f"cannot reach the Graph API at {self.graph_base}: {exc}{hint}"
            ) from None

    async def _sync_templates(self) -> int:
        items: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            params = {
                "limit": "100",
                "fields": "name,language,status,category,components,"
                "parameter_format,rejected_reason,id,sub_category",
            }
            if after:
                params["after"] = after
            async with self.session.get(
                self._url(f"{self.settings.waba_id}/message_templates"), params=params
            ) as response:
                data = await _json_or_none(response)
                if response.status != 200:
                    problem = classify_error(response.status, data)
                    if problem.kind == "credentials":
                        self._problem = f"{problem.reason}: {problem.message or ''}".strip()
                    raise TemplateSyncError(
                        f"{self.name}: template sync failed: "
                        f"{problem.reason} {problem.message or ''}".strip()
                    )
            page = parse_template_page(data or {})
            for note in page.skipped:
                log.info("template sync %s: skipped %s", self.name, note)
            items += [
                dict(item, language=normalise_language(item.get("language")) or "")
                for item in (data or {}).get("data", [])
                if isinstance(item, dict) and item.get("name") and item.get("language")
            ]
            after = page.next_after
            if not after:
                break
        await self.store.save_templates(self.name, items)
        self._load(items)
        return len(items)

    async def load_templates(self) -> None:
        self._load(await self.store.templates(self.name))

    def _load(self, items: Iterable[dict[str, Any]]) -> None:
        templates: dict[tuple[str, str], TemplateInfo] = {}
        languages: dict[str, list[str]] = {}
        for item in items:
            try:
                info = parse_template(item)
            except Exception:  # one odd template must not hide the others
                log.warning("template %s of %s could not be read", item.get("name"), self.name)
                continue
            templates[(info.name, normalise_language(info.language) or "")] = info
            languages.setdefault(info.name, []).append(normalise_language(info.language) or "")
        self._templates, self._languages = templates, languages

    def template_problems(self, template: dict[str, Any]) -> str | None:
        """For ``chasqui check``: why this template block would be refused, or None."""
        language = normalise_language(template.get("language")) or ""
        problem = check_template_params(
            self._templates.get((template["name"], language)),
            template,
            language=language,
            available_languages=self._languages.get(template["name"], []),
        )
        return f"{problem.code}: {problem.message}" if problem else None

    async def _template_status(
        self,
        name: str | None,
        language: str | None,
        event: str,
        reason: str | None,
        rejection: dict[str, Any] | None,
    ) -> None:
        stored = {(t["name"], t["language"]): t for t in await self.store.templates(self.name)}
        item = stored.get((name or "", language or ""))
        if item is None:
            log.info("status %s for unknown template %s/%s: syncing", event, name, language)
            if self._resync is None or self._resync.done():
                self._resync = asyncio.create_task(self._sync_quietly())
            return
        item["status"] = event
        if reason and reason != "NONE":
            item["rejected_reason"] = reason
        if rejection:
            item["rejection_info"] = rejection
        await self.store.update_template(self.name, item)
        await self.load_templates()

    async def _sync_quietly(self) -> None:
        try:
            count = await self.sync_templates()
            log.info("synced %d templates for %s", count, self.name)
        except (TemplateSyncError, aiohttp.ClientError, TimeoutError) as exc:
            log.warning("%s", exc)

    async def _sync_forever(self) -> None:
        interval = parse_duration(self.settings.template_sync)
        await asyncio.sleep(1 if self.settings.sandbox else 0)  # the sandbox starts with us
        while True:
            await self._sync_quietly()
            await asyncio.sleep(interval)


def _settings(config: ChannelConfig) -> WhatsAppConfig:
    try:
        return WhatsAppConfig.model_validate(config.model_dump())
    except ValidationError as exc:
        raise ValueError(
            summary(exc, root="channel", unknown=None, missing=None, plain=False)
        ) from None


def sandbox_prefix(name: str) -> str:
    return f"/_sandbox/{name}"


class TemplateSyncError(Exception):
    pass


async def _read_capped(request: web.Request, limit: int) -> bytes:
    """The body, or its first ``limit`` bytes: one ``read(n)`` returns only what has arrived."""
    raw = bytearray()
    while len(raw) < limit:
        chunk = await request.content.read(limit - len(raw))
        if not chunk:
            break
        raw += chunk
    return bytes(raw)


async def _json_or_none(response: aiohttp.ClientResponse) -> Any:
    try:
        return await response.json(content_type=None)
    except (ValueError, aiohttp.ContentTypeError):
        return None
