"""The sandbox's HTTP face: the Graph API routes Chasqui calls, and the ``/_fake`` controls."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from channels.whatsapp.sandbox.config import SandboxConfig
from channels.whatsapp.sandbox.context import (
    SANDBOX_DISPATCHER,
    SANDBOX_STATE,
    dispatcher_of,
    state_of,
    template_posts,
)
from channels.whatsapp.sandbox.controls import FakeError, add_controls
from channels.whatsapp.sandbox.errors import GraphError, invalid_token
from channels.whatsapp.sandbox.send import handle_send
from channels.whatsapp.sandbox.state import SandboxState
from channels.whatsapp.sandbox.templates import render, review, status_value, validate_new
from channels.whatsapp.sandbox.webhooks import (
    Dispatcher,
    Post,
)

log = logging.getLogger("chasqui.sandbox")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
VER = r"{ver:v[0-9]+\.[0-9]+}"
FAKE = "/_fake/"


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return None


def _token(request: web.Request) -> str | None:
    """A Graph access token: the bearer header, or ``?access_token=`` as Meta also takes."""
    return _bearer(request) or request.query.get("access_token")


def _admin(request: web.Request) -> bool:
    """Whether a /_fake request carries the admin token (header only; compared in constant time)."""
    given = _bearer(request) or ""
    expected = request.app[SANDBOX_STATE].config.admin_token
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())


UNAUTHORIZED = {
    "error": {
        "code": "unauthorized",
        "message": "the sandbox's /_fake controls take the admin token: "
        "'Authorization: Bearer <token>'",
    }
}


@web.middleware
async def graph_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bearer token on every route: a Graph access token in Meta's error shape, the admin token
    on /_fake (401 ``unauthorized``, plain errors)."""
    # By the matched route's pattern, so a Graph node named "_fake" stays a Graph route; also
    # under a prefix, when mounted as a sub-application. Unmatched paths go by the path itself.
    resource = request.match_info.route.resource
    fake = FAKE in (resource.canonical if resource is not None else request.path)
    if fake and not _admin(request):
        return web.json_response(UNAUTHORIZED, status=401)
    try:
        if not fake and _token(request) not in request.app[SANDBOX_STATE].config.access_tokens:
            raise invalid_token()
        return await handler(request)
    except GraphError as exc:
        return exc.response()
    except FakeError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    except web.HTTPNotFound:
        if fake:
            raise
        return GraphError(100, f"Unknown path components: {request.path}").response()


# -- helpers ---------------------------------------------------------------------------------


def _unknown_object(node: str, method: str = "get") -> GraphError:
    return GraphError(
        100,
        f"Unsupported {method} request. Object with ID '{node}' does not exist, cannot be loaded "
        "due to missing permissions, or does not support this operation.",
        subcode=33,
    )


def _waba(request: web.Request, method: str) -> None:
    node = request.match_info["node"]
    if node != state_of(request).config.waba_id:
        raise _unknown_object(node, method)


def _fields(request: web.Request) -> list[str] | None:
    raw = request.query.get("fields")
    return [f.strip() for f in raw.split(",") if f.strip()] if raw else None


# -- Graph API -------------------------------------------------------------------------------


async def send_message(request: web.Request) -> web.Response:
    state = state_of(request)
    pnid = request.match_info["node"]
    raw = await request.read()
    record: dict[str, Any] = {"at": state.now(), "phone_number_id": pnid, "raw": raw}
    state.sent.append(record)
    try:
        number = state.numbers.get(pnid)
        if number is None:
            raise _unknown_object(pnid, "post")
        try:
            body = json.loads(raw)
        except ValueError:
            raise GraphError(100, "The request body is not valid JSON.") from None
        answer = handle_send(state, dispatcher_of(request), number, body)
    except GraphError as exc:
        error = exc.body()
        record["http_status"], record["response"] = exc.http_status, error
        return web.json_response(error, status=exc.http_status)
    record["http_status"], record["response"] = 200, answer
    return web.json_response(answer)


async def list_templates(request: web.Request) -> web.Response:
    _waba(request, "get")
    q = request.query
    try:
        limit = max(1, min(1000, int(q.get("limit", "25"))))
    except ValueError:
        raise GraphError(100, "limit must be an integer") from None
    page = state_of(request).templates.page(
        limit=limit,
        after=q.get("after"),
        before=q.get("before"),
        status=q.get("status"),
        name=q.get("name"),
        language=q.get("language"),
        category=q.get("category"),
    )
    fields = _fields(request)
    body: dict[str, Any] = {"data": [render(t, fields) for t in page.items]}
    if page.items:
        paging: dict[str, Any] = {"cursors": {"before": page.before, "after": page.after}}
        base = request.url.with_query({k: v for k, v in q.items() if k not in ("after", "before")})
        if page.has_next and page.after:
            paging["next"] = str(base.update_query(after=page.after))
        if page.has_previous and page.before:
            paging["previous"] = str(base.update_query(before=page.before))
        body["paging"] = paging
    return web.json_response(body)


async def create_template(request: web.Request) -> web.Response:
    _waba(request, "post")
    state = state_of(request)
    try:
        body = json.loads(await request.read())
    except ValueError:
        raise GraphError(100, "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise GraphError(100, "The request body must be a JSON object.")
    tpl = state.templates.add(validate_new(state.templates, body))

    def decide() -> list[Post]:
        if state.templates.by_id.get(tpl.id) is not tpl or tpl.status != "PENDING":
            return []  # deleted or changed meanwhile
        scripted = state.reviews.pop(tpl.name, None)
        status, reason, info = review(tpl.data)
        if scripted is not None:
            status, reason = scripted
            info = info if status == "REJECTED" and reason == "INVALID_FORMAT" else None
        tpl.data["status"] = status
        if status == "REJECTED":
            tpl.data["rejected_reason"] = reason
        return template_posts(state, status_value(tpl, status, reason, info))

    dispatcher_of(request).schedule(state.config.review_delay, ("call", decide))
    return web.json_response({"id": tpl.id, "status": tpl.status, "category": tpl.category})


async def delete_template(request: web.Request) -> web.Response:
    _waba(request, "delete")
    state = state_of(request)
    name = request.query.get("name")
    if not name:
        raise GraphError(131008, "The parameter name is required.")
    hsm_id = request.query.get("hsm_id")
    doomed = [t for t in state.templates.find(name) if hsm_id is None or t.id == hsm_id]
    if not doomed:
        raise GraphError(100, f'Message template "{name}" not found', subcode=2593002)
    for tpl in doomed:
        state.templates.remove(tpl)
    return web.json_response({"success": True})


PHONE_FIELDS: dict[str, Any] = {
    "verified_name": "Chasqui Demo",
    "code_verification_status": "VERIFIED",
    "quality_rating": "GREEN",
    "platform_type": "CLOUD_API",
    "throughput": {"level": "STANDARD"},
    "whatsapp_business_manager_messaging_limit": "TIER_2K",
    "name_status": "APPROVED",
}


async def get_node(request: web.Request) -> web.Response:
    state = state_of(request)
    node = request.match_info["node"]
    fields = _fields(request)
    number = state.numbers.get(node)
    if number is not None:
        values = {"display_phone_number": number.display_phone_number, **PHONE_FIELDS}
        wanted = fields or [
            "verified_name",
            "code_verification_status",
            "display_phone_number",
            "quality_rating",
        ]
        out = {f: values[f] for f in wanted if f in values}
        out["id"] = node
        return web.json_response(out)
    tpl = state.templates.by_id.get(node)
    if tpl is not None:
        return web.json_response(render(tpl, fields))
    media = state.media.get(node)
    if media is not None:
        return web.json_response(
            {
                "messaging_product": "whatsapp",
                "url": str(request.url.join(request.app.router["media"].url_for(media_id=node))),
                "mime_type": media.mime_type,
                "sha256": media.sha256,
                "file_size": len(media.content),
                "id": node,
            }
        )
    if node == state.config.waba_id:
        return web.json_response({"id": node, "name": "Chasqui Demo"})
    raise _unknown_object(node)


async def download_media(request: web.Request) -> web.Response:
    media = state_of(request).media.get(request.match_info["media_id"])
    if media is None:
        return web.Response(status=404, text="not found")
    return web.Response(body=media.content, content_type=media.mime_type.split(";")[0])


# -- the application -------------------------------------------------------------------------


def failure_text(errors: list[dict[str, Any]] | None) -> str:
    """A failed status's reason, for the phone: ``131047 Re-engagement message``."""
    if not errors:
        return ""
    first = errors[0]
    return f"{first.get('code', '')} {first.get('title') or first.get('message') or ''}".strip()


def create_sandbox_app(config: SandboxConfig) -> web.Application:
    """The sandbox as an aiohttp app; its webhook sender lives in the app's cleanup context."""
    if config.window_mode not in ("async", "sync"):
        raise ValueError("window_mode is 'async' or 'sync'")
    if not config.numbers:
        raise ValueError("the sandbox needs at least one number")
    if not config.admin_token:
        raise ValueError("the sandbox needs an admin_token: its /_fake controls require it")
    state = SandboxState(config)
    dispatcher = Dispatcher(config, state.now, state.faults)
    dispatcher.on_status = lambda event: state.chats.tick(
        event.wamid, event.status, failure_text(event.errors)
    )
    app = web.Application(middlewares=[graph_middleware])
    app[SANDBOX_STATE] = state
    app[SANDBOX_DISPATCHER] = dispatcher

    async def lifetime(_app: web.Application) -> AsyncIterator[None]:
        await dispatcher.start()
        yield
        await dispatcher.stop()

    app.cleanup_ctx.append(lifetime)
    r = app.router
    r.add_post(f"/{VER}/{{node}}/messages", send_message)
    r.add_get(f"/{VER}/{{node}}/message_templates", list_templates)
    r.add_post(f"/{VER}/{{node}}/message_templates", create_template)
    r.add_delete(f"/{VER}/{{node}}/message_templates", delete_template)
    r.add_get(f"/{VER}/{{node}}", get_node)
    r.add_get("/_media/{media_id}", download_media, name="media")
    add_controls(r)
    return app


async def run_sandbox(config: SandboxConfig, host: str = "127.0.0.1", port: int = 8090) -> None:
    """Serve the sandbox until cancelled (``chasqui sandbox``)."""
    runner = web.AppRunner(create_sandbox_app(config), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        log.info("WhatsApp sandbox on http://%s:%s (WABA %s)", host, port, config.waba_id)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
