"""The sandbox's HTTP face: the Graph API routes Chasqui calls, and the ``/_fake`` controls."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from channels.whatsapp.sandbox.config import SandboxConfig, SandboxNumber
from channels.whatsapp.sandbox.errors import GraphError, invalid_token
from channels.whatsapp.sandbox.inbound import InboundError, build_message
from channels.whatsapp.sandbox.send import handle_send
from channels.whatsapp.sandbox.state import FAULTS, ErrorRule, SandboxState
from channels.whatsapp.sandbox.templates import render, review, status_value, validate_new
from channels.whatsapp.sandbox.webhooks import (
    Delivery,
    Dispatcher,
    Post,
    inbound_value,
    messages_envelope,
    template_envelope,
)

log = logging.getLogger("chasqui.sandbox")

SANDBOX_STATE = web.AppKey("sandbox_state", SandboxState)
SANDBOX_DISPATCHER = web.AppKey("sandbox_dispatcher", Dispatcher)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
VER = r"{ver:v[0-9]+\.[0-9]+}"
FAKE = "/_fake/"


class FakeError(Exception):
    """A bad request to a ``/_fake`` control: 400 with a plain message."""


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


def _state(request: web.Request) -> SandboxState:
    return request.app[SANDBOX_STATE]


def _dispatcher(request: web.Request) -> Dispatcher:
    return request.app[SANDBOX_DISPATCHER]


def _unknown_object(node: str, method: str = "get") -> GraphError:
    return GraphError(
        100,
        f"Unsupported {method} request. Object with ID '{node}' does not exist, cannot be loaded "
        "due to missing permissions, or does not support this operation.",
        subcode=33,
    )


def _waba(request: web.Request, method: str) -> None:
    node = request.match_info["node"]
    if node != _state(request).config.waba_id:
        raise _unknown_object(node, method)


def _fields(request: web.Request) -> list[str] | None:
    raw = request.query.get("fields")
    return [f.strip() for f in raw.split(",") if f.strip()] if raw else None


async def _fake_body(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.read() or b"{}")
    except ValueError:
        raise FakeError("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise FakeError("the body must be a JSON object")
    return body


def _all_urls(state: SandboxState) -> list[str]:
    return list(dict.fromkeys(n.webhook_url for n in state.config.numbers))


# -- Graph API -------------------------------------------------------------------------------


async def send_message(request: web.Request) -> web.Response:
    state = _state(request)
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
        answer = handle_send(state, _dispatcher(request), number, body)
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
    page = _state(request).templates.page(
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
    state = _state(request)
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
        return _template_posts(state, status_value(tpl, status, reason, info))

    _dispatcher(request).schedule(state.config.review_delay, ("call", decide))
    return web.json_response({"id": tpl.id, "status": tpl.status, "category": tpl.category})


def _template_posts(state: SandboxState, value: dict[str, Any]) -> list[Post]:
    obj = template_envelope(state.config.waba_id, state.now(), value)
    summary = [f"template:{value['message_template_id']}:{value['event']}"]
    return [(url, "template", obj, summary) for url in _all_urls(state)]


async def delete_template(request: web.Request) -> web.Response:
    _waba(request, "delete")
    state = _state(request)
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
    state = _state(request)
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
    media = _state(request).media.get(request.match_info["media_id"])
    if media is None:
        return web.Response(status=404, text="not found")
    return web.Response(body=media.content, content_type=media.mime_type.split(";")[0])


# -- /_fake controls -------------------------------------------------------------------------


async def fake_inbound(request: web.Request) -> web.Response:
    state, dispatcher = _state(request), _dispatcher(request)
    body = await _fake_body(request)
    specs = body["messages"] if isinstance(body.get("messages"), list) else [body]
    if not specs or not all(isinstance(s, dict) for s in specs):
        raise FakeError("give one message, or 'messages': [message, ...] for one POST")
    default = state.config.numbers[0].phone_number_id
    pnid = str(specs[0].get("phone_number_id") or body.get("phone_number_id") or default)
    number = state.numbers.get(pnid)
    if number is None:
        raise FakeError(f"unknown phone_number_id {pnid}")
    # One change per user, holding that user's messages, all in one POST.
    changes: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {}
    ids = []
    try:
        for spec in specs:
            contact, message = build_message(state, number, spec)
            who = str(contact.get("wa_id") or contact.get("user_id"))
            changes.setdefault(who, ([contact], []))[1].append(message)
            ids.append(message["id"])
    except InboundError as exc:
        raise FakeError(str(exc)) from None
    obj = messages_envelope(
        state.config.waba_id,
        [inbound_value(number, contacts, messages) for contacts, messages in changes.values()],
    )
    deliveries = dispatcher.post(number.webhook_url, "messages", obj, ids)
    if body.get("wait", True):
        await dispatcher.wait(deliveries)
    return web.json_response(
        {
            "id": ids[0],
            "ids": ids,
            "delivery": deliveries[0].public(with_payload=False),
        }
    )


async def fake_errors(request: web.Request) -> web.Response:
    state = _state(request)
    if request.method == "DELETE":
        state.rules.clear()
    elif request.method == "POST":
        body = await _fake_body(request)
        for spec in body.get("rules", [body]):
            state.rules.append(_rule(spec))
    return web.json_response({"rules": [r.public() for r in state.rules]})


def _rule(spec: Any) -> ErrorRule:
    if not isinstance(spec, dict) or not isinstance(spec.get("code"), int):
        raise FakeError("a rule needs an integer 'code'")
    match = spec.get("match") or {}
    if not isinstance(match, dict):
        raise FakeError("'match' must be an object")
    mode = spec.get("mode", "sync")
    if mode not in ("sync", "async"):
        raise FakeError("'mode' is 'sync' or 'async'")
    times = spec.get("times", 1)
    if times is not None and (not isinstance(times, int) or times < 1):
        raise FakeError("'times' is a positive integer, or null for every matching send")
    to = match.get("to")
    return ErrorRule(
        code=spec["code"],
        mode=mode,
        http_status=int(spec.get("http_status", 400)),
        to="".join(ch for ch in str(to) if ch.isalnum() or ch == ".") if to else None,
        type=match.get("type"),
        template=match.get("template"),
        times=times,
        details=spec.get("details"),
    )


async def fake_clock(request: web.Request) -> web.Response:
    state = _state(request)
    if request.method == "POST":
        body = await _fake_body(request)
        advance, at = body.get("advance"), body.get("set")
        for value in (advance, at):
            if value is not None and not isinstance(value, int | float):
                raise FakeError("'advance' and 'set' take seconds")
        state.set_clock(advance=advance, at=at)
    return web.json_response({"now": state.now(), "offset": state.offset})


async def fake_templates(request: web.Request) -> web.Response:
    state, dispatcher = _state(request), _dispatcher(request)
    if request.method == "GET":
        return web.json_response({"data": [t.data for t in state.templates.by_id.values()]})
    body = await _fake_body(request)
    out: dict[str, Any] = {}
    if "seed" in body:
        if not isinstance(body["seed"], list):
            raise FakeError("'seed' is a list of templates as the Graph API lists them")
        try:
            out["seeded"] = [t.id for t in state.templates.seed(body["seed"])]
        except (KeyError, TypeError, AttributeError) as exc:
            raise FakeError(f"bad template: {exc!r}") from None
    if "review" in body:
        spec = body["review"]
        if not isinstance(spec, dict) or "name" not in spec:
            raise FakeError("'review' is {name, status, reason?}")
        state.reviews[str(spec["name"])] = (
            str(spec.get("status", "REJECTED")).upper(),
            str(spec.get("reason", "INVALID_FORMAT")),
        )
    if "set_status" in body:
        spec = body["set_status"]
        if not isinstance(spec, dict) or "name" not in spec or "status" not in spec:
            raise FakeError("'set_status' is {name, language?, status, reason?}")
        found = state.templates.find(str(spec["name"]), spec.get("language"))
        if not found:
            raise FakeError(f"no template named {spec['name']!r}")
        deliveries: list[Delivery] = []
        status = str(spec["status"]).upper()
        for tpl in found:
            tpl.data["status"] = status
            value = status_value(tpl, status, spec.get("reason", "NONE"))
            for url, kind, obj, summary in _template_posts(state, value):
                deliveries += dispatcher.post(url, kind, obj, summary)
        await dispatcher.wait(deliveries)
        out["updated"] = [t.id for t in found]
        out["deliveries"] = [d.public(with_payload=False) for d in deliveries]
    return web.json_response(out)


async def fake_webhook_faults(request: web.Request) -> web.Response:
    state = _state(request)
    if request.method == "POST":
        body = await _fake_body(request)
        if body.get("clear"):
            state.faults.clear()
        for name, count in body.items():
            if name == "clear":
                continue
            if name not in FAULTS or not isinstance(count, int) or count < 0:
                raise FakeError(f"faults are counts of: {', '.join(FAULTS)}")
            state.faults[name] = state.faults.get(name, 0) + count
    return web.json_response({"faults": {k: v for k, v in state.faults.items() if v}})


def _limit(request: web.Request) -> int | None:
    raw = request.query.get("limit")
    return int(raw) if raw and raw.isdigit() else None


async def fake_sent(request: web.Request) -> web.Response:
    q = request.query
    out = []
    for record in _state(request).sent:
        raw: bytes = record["raw"]
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        item = {**record, "raw": raw.decode(errors="replace"), "body": body}
        if isinstance(body, dict):
            if "to" in q and "".join(c for c in str(body.get("to")) if c.isdigit()) != q["to"]:
                continue
            if "type" in q and body.get("type", "text") != q["type"]:
                continue
        if "status" in q and str(item.get("http_status")) != q["status"]:
            continue
        out.append(item)
    limit = _limit(request)
    return web.json_response({"data": out[-limit:] if limit else out})


async def fake_webhooks(request: web.Request) -> web.Response:
    q = request.query
    since = int(q["since"]) if q.get("since", "").isdigit() else 0
    records = [
        d.public()
        for d in _dispatcher(request).records
        if d.seq > since and ("kind" not in q or d.kind == q["kind"])
    ]
    limit = _limit(request)
    return web.json_response(
        {"data": records[-limit:] if limit else records, "pending": _dispatcher(request).pending}
    )


async def fake_flush(request: web.Request) -> web.Response:
    return web.json_response({"posted": await _dispatcher(request).flush()})


async def fake_reset(request: web.Request) -> web.Response:
    _state(request).reset()
    _dispatcher(request).clear()
    return web.json_response({"reset": True})


async def fake_verify(request: web.Request) -> web.Response:
    """Play the dashboard's verification GET against one number's webhook URL."""
    state, dispatcher = _state(request), _dispatcher(request)
    body = await _fake_body(request)
    number: SandboxNumber | None = state.numbers.get(
        str(body.get("phone_number_id") or state.config.numbers[0].phone_number_id)
    )
    if number is None:
        raise FakeError("unknown phone_number_id")
    challenge = str(secrets.randbelow(10**10))
    params = {
        "hub.mode": "subscribe",
        "hub.challenge": challenge,
        "hub.verify_token": str(body.get("verify_token") or state.config.verify_token),
    }
    assert dispatcher.session is not None
    try:
        async with dispatcher.session.get(number.webhook_url, params=params) as resp:
            text = await resp.text()
            status = resp.status
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return web.json_response({"verified": False, "error": repr(exc)})
    return web.json_response(
        {"verified": status == 200 and text == challenge, "status": status, "body": text[:200]}
    )


# -- the application -------------------------------------------------------------------------


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
    r.add_post("/_fake/inbound", fake_inbound)
    r.add_route("*", "/_fake/errors", fake_errors)
    r.add_route("*", "/_fake/clock", fake_clock)
    r.add_route("*", "/_fake/templates", fake_templates)
    r.add_route("*", "/_fake/webhook-faults", fake_webhook_faults)
    r.add_get("/_fake/sent", fake_sent)
    r.add_get("/_fake/webhooks", fake_webhooks)
    r.add_post("/_fake/flush", fake_flush)
    r.add_post("/_fake/reset", fake_reset)
    r.add_post("/_fake/verify", fake_verify)
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
