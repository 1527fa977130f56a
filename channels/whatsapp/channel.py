"""The WhatsApp Cloud API channel: webhooks in, sends out, templates synced and checked.

The protocol itself (payload shapes, error codes, template rules) lives in the pure modules
beside this one; this class does the I/O: it checks and parses webhooks into the channel
protocol's typed events (the core creates contacts, deduplicates, queues and applies statuses),
sends through one aiohttp session per number with bounded concurrency, waits for the number's
turn of the shared rate limit (``host.throttle``), and keeps the template cache.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, ClassVar

import aiohttp
from aiohttp import web

from channels.protocol import (
    Capabilities,
    Channel,
    ChannelConfig,
    ChannelHost,
    Command,
    Inbound,
    InboundEvent,
    Message,
    Mount,
    RateLimit,
    SendResult,
    Status,
    StudioPage,
    TemplatePreview,
    TemplateUpdate,
    WebhookError,
    is_loopback,
    loads,
    parse_duration,
    read_settings,
)
from channels.whatsapp.commands import SANDBOX, SANDBOX_LOOPBACK
from channels.whatsapp.config import WhatsAppConfig
from channels.whatsapp.events import inbound_message
from channels.whatsapp.outbound import BUTTONS_MAX, ROWS_MAX
from channels.whatsapp.preview import preview
from channels.whatsapp.protocol import (
    OutboundError,
    TemplateInfo,
    TemplateParseError,
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
CAPABILITIES = Capabilities(
    schemes=("whatsapp",),
    templates=True,
    buttons=BUTTONS_MAX,
    list_rows=ROWS_MAX,
    media=True,
    window=24 * 3600,
    redelivery=7 * 86400,  # Meta redelivers for up to 7 days
)
CREDENTIALS_RETRY = 300.0  # seconds between tries while Meta refuses our token
TEMPLATES_WAIT = 2.0  # seconds a template send waits, each time, for the first template sync
# credentials problems an operator fixes in minutes (not an account restriction or a lock)
FIXABLE_CREDENTIALS = {
    "auth_failed",
    "permission_denied",
    "access_token_invalid",
    "capability_missing",
}


class WhatsAppChannel(Channel):
    TYPE = "whatsapp"
    CAPABILITIES = CAPABILITIES  # the rate comes from each number's ``max_mps``
    MEDIA_ID = re.compile(r"[0-9]{1,32}")  # Meta's media ids are digits (webhooks, uploads)
    # phone_number_id -> channel: Meta posts every number of an app to one callback URL
    _by_number: ClassVar[dict[str, WhatsAppChannel]] = {}

    def __init__(self, name: str, config: ChannelConfig, host: ChannelHost) -> None:
        super().__init__(name, config, host)
        self.settings = read_settings(WhatsAppConfig, config)
        self.graph_base = self.settings.graph_url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None
        self._templates: dict[tuple[str, str], TemplateInfo] = {}
        self._items: dict[tuple[str, str], dict[str, Any]] = {}  # their definitions, as synced
        self._languages: dict[str, list[str]] = {}
        # False until templates were synced once, here or by an earlier run (kept in Redis):
        # a template send waits for that instead of failing as "not found" (a start made in
        # the first second of a fresh server)
        self._templates_known = False
        self._problem: str | None = None  # set by a credentials error, cleared by a success
        self._sync_task: asyncio.Task[None] | None = None
        self._resync: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        mps = self.settings.max_mps
        self._capabilities = replace(
            CAPABILITIES, rate=RateLimit(mps, burst=max(1.0, mps / 10)) if mps > 0 else None
        )

    # -- lifetime ----------------------------------------------------------------------------
    @classmethod
    def validate(cls, config: ChannelConfig) -> None:
        read_settings(WhatsAppConfig, config)

    @classmethod
    def mounts(
        cls, name: str, config: ChannelConfig, base_url: str, admin_token: str
    ) -> list[Mount]:
        """With ``graph_url = "sandbox"``, this server also serves a Graph API stand-in (its
        ``/_fake`` controls take the server's admin token); the sandbox package is imported only
        then (production never loads it)."""
        s = read_settings(WhatsAppConfig, config)
        if not s.sandbox:
            return []
        from channels.whatsapp.sandbox.mount import sandbox_for

        return [Mount(sandbox_prefix(name), sandbox_for(name, s, base_url, admin_token))]

    @classmethod
    def studio_pages(
        cls, name: str, config: ChannelConfig, mounts: Sequence[Mount]
    ) -> list[StudioPage]:
        """On the sandbox, Studio gets the sandbox phone: you are the contact of this number."""
        sandbox = next((m.app for m in mounts if m.prefix == sandbox_prefix(name)), None)
        if sandbox is None:
            return []
        from channels.whatsapp.sandbox.phone import create_phone_app

        return [StudioPage("Sandbox phone", "phone", create_phone_app(sandbox))]

    @classmethod
    def serving_problem(cls, config: ChannelConfig, *, host: str, processes: int) -> str | None:
        if not read_settings(WhatsAppConfig, config).sandbox:
            return None
        if not is_loopback(host):
            return SANDBOX_LOOPBACK.format(f"server.host = {host!r}")
        if processes > 1:
            return (
                "server.processes > 1 cannot share an in-process sandbox: run `chasqui sandbox` "
                "and point graph_url at it"
            )
        return None

    @classmethod
    def commands(cls) -> Sequence[Command]:
        return (SANDBOX,)

    @classmethod
    def demo_templates(cls) -> list[dict[str, Any]]:
        """The sandbox's seed (imported only when asked: production never loads it)."""
        from channels.whatsapp.sandbox.templates import demo_templates

        return demo_templates()

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

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

    def facts(self) -> list[tuple[str, str]]:
        s = self.settings
        number = s.display_phone_number or s.phone_number_id
        provider = "sandbox (a stand-in of Meta's Graph API)" if s.sandbox else s.graph_url
        return [
            ("Number", f"+{number}" if number.isdigit() else number),
            ("Graph API", provider),
            ("Templates synced", str(len(self._templates))),
        ]

    def _url(self, path: str) -> str:
        return f"{self.graph_base}/{self.settings.api_version}/{path}"

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "channel not started"
        return self._session

    # -- webhooks in -------------------------------------------------------------------------
    async def parse(self, request: web.Request) -> Inbound:
        if request.method == "GET":
            challenge = verify_challenge(
                request.query, self.settings.verify_token.get_secret_value()
            )
            if challenge is None:
                raise WebhookError(403, "forbidden", "wrong verify token or mode")
            return Inbound(reply=web.Response(text=challenge, content_type="text/plain"))
        if (request.content_length or 0) > MAX_WEBHOOK_BYTES:
            raise _too_large()
        raw = await _read_capped(request, MAX_WEBHOOK_BYTES + 1)
        if len(raw) > MAX_WEBHOOK_BYTES:
            raise _too_large()
        secret = self.settings.app_secret.get_secret_value()
        if not valid_signature(raw, request.headers.get("X-Hub-Signature-256"), secret):
            log.warning("webhook for %s refused: missing or wrong signature", self.name)
            raise WebhookError(401, "bad_signature", "missing or wrong X-Hub-Signature-256")
        try:
            payload = loads(raw)  # NaN/Infinity or nesting too deep: not JSON either
        except ValueError:
            raise WebhookError(400, "bad_request", "the body is not valid JSON") from None
        batch = parse_webhook(payload)
        for note in batch.skipped:
            log.info("webhook for %s: skipped %s", self.name, note)
        for detail in batch.errors:
            log.warning("WhatsApp reports an error on %s: %s", self.name, detail)
        return Inbound(self._events(batch))

    def _events(self, batch: WebhookBatch) -> list[InboundEvent]:
        """The batch as typed events, each for the channel of its number (Meta posts every
        number of an app to one callback URL)."""
        events: list[InboundEvent] = [
            inbound_message(self._for_number(m.phone_number_id), m) for m in batch.messages
        ]
        for status in batch.statuses:
            error = classify_failed_status(status).as_error() if status.status == "failed" else None
            events.append(
                Status(
                    self._for_number(status.phone_number_id),
                    status.wamid,
                    status.status,
                    float(status.timestamp),
                    error,
                )
            )
        for update in batch.template_updates:
            events.append(
                TemplateUpdate(
                    self.name,
                    update.name or "",
                    update.language or "",
                    update.event,
                    update.reason if update.reason != "NONE" else None,
                    update.rejection_info,
                )
            )
        return events

    def _for_number(self, phone_number_id: str) -> str:
        return self._by_number.get(phone_number_id, self).name

    async def accepted(self, message: Message) -> None:
        """Blue ticks for a reply once it is safely queued, in the background."""
        if self.settings.mark_read and message.is_reply:
            task = asyncio.create_task(self._mark_read(message.external_id))
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
        if template and not self._templates_known:
            return SendResult(
                False,
                error={
                    "code": "templates_not_synced",
                    "message": f"{self.name} has not synced its templates yet; sending soon",
                },
                retry_after=TEMPLATES_WAIT,
            )
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
        if self._capabilities.rate is not None:  # after the checks: a refusal costs no turn
            await self.host.throttle(self.settings.phone_number_id, self._capabilities.rate)
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
        await self.host.save_templates(self.name, items)
        self._load(items)
        self._templates_known = True
        return len(items)

    async def load_templates(self) -> None:
        items = await self.host.templates(self.name)
        self._load(items)
        self._templates_known = self._templates_known or bool(items)

    def _load(self, items: Iterable[dict[str, Any]]) -> None:
        templates: dict[tuple[str, str], TemplateInfo] = {}
        definitions: dict[tuple[str, str], dict[str, Any]] = {}
        languages: dict[str, list[str]] = {}
        for item in items:
            try:
                info = parse_template(item)
            except Exception:  # one odd template must not hide the others
                log.warning("template %s of %s could not be read", item.get("name"), self.name)
                continue
            key = (info.name, normalise_language(info.language) or "")
            templates[key], definitions[key] = info, item
            languages.setdefault(info.name, []).append(key[1])
        self._templates, self._items, self._languages = templates, definitions, languages

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

    @classmethod
    def show_template(cls, item: Mapping[str, Any]) -> TemplatePreview:
        try:
            info = parse_template(item)
        except TemplateParseError:
            info = None
        block = {"name": item.get("name"), "language": item.get("language")}
        shown = preview(item, info, block, language=str(item.get("language") or ""))
        return replace(shown, problem=None)  # no parameters given: not a send to judge

    def preview_template(self, template: Mapping[str, Any]) -> TemplatePreview:
        language = normalise_language(str(template.get("language") or "")) or ""
        key = (str(template.get("name")), language)
        return preview(
            self._items.get(key),
            self._templates.get(key),
            template,
            language=language,
            languages=self._languages.get(key[0], []),
        )

    async def templates_changed(self, *, resync: bool) -> None:
        if not resync:
            await self.load_templates()
        elif self._resync is None or self._resync.done():
            self._resync = asyncio.create_task(self._sync_quietly())

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


def _too_large() -> WebhookError:
    return WebhookError(413, "body_too_large", f"a webhook is at most {MAX_WEBHOOK_BYTES} bytes")


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
