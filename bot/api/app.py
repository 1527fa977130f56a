"""The aiohttp application: health, the admin API, and the runtime's lifetime."""

from __future__ import annotations

import hmac
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.api import contacts as api_contacts
from bot.api import openapi
from bot.api import runs as api_runs
from bot.api import starts as api_starts
from bot.core.config import Config
from bot.core.errors import ApiError, json_body
from bot.engine.sprint import Session
from bot.work.runtime import Runtime, admin_token
from channels.protocol import channel_class

log = logging.getLogger("chasqui.server")

RUNTIME = web.AppKey("runtime", Runtime)
TOKEN = web.AppKey("token", str)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes a JSON error with a code; never a bare 500 or a stack trace."""
    try:
        if request.path.startswith("/api/"):
            _authorize(request)
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except web.HTTPRequestEntityTooLarge:
        return ApiError(413, "body_too_large", "the request body is too large").response()
    except web.HTTPNotFound:
        return ApiError(404, "not_found", f"no route {request.path}").response()
    except web.HTTPMethodNotAllowed:
        return ApiError(405, "method_not_allowed", f"{request.method} not allowed").response()
    except web.HTTPException:
        raise
    except (RedisConnectionError, RedisTimeoutError):
        log.warning("Redis unavailable on %s %s", request.method, request.path)
        return ApiError(
            503,
            "redis_unavailable",
            "the data store is unavailable; retry shortly",
        ).response()
    except Exception:
        ref = uuid.uuid4().hex[:12]
        log.exception("internal error %s on %s %s", ref, request.method, request.path)
        return ApiError(500, "internal", f"internal error (reference {ref})").response()


def _authorize(request: web.Request) -> None:
    header = request.headers.get("Authorization", "")
    given = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
    if not given or not hmac.compare_digest(given.encode(), request.app[TOKEN].encode()):
        raise ApiError(
            401, "unauthorized", "send the admin token as 'Authorization: Bearer <token>'"
        )


async def healthz(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    checks: dict[str, Any] = {"flows": len(runtime.registry.flows)}
    try:
        await runtime.store.ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"down: {type(exc).__name__}"
    channels = {name: ch.health() for name, ch in runtime.channels.items()}
    if channels:
        checks["channels"] = channels
    healthy = checks["redis"] == "ok" and all(c["status"] == "ok" for c in channels.values())
    return web.json_response(
        {"status": "ok" if healthy else "unhealthy", **checks}, status=200 if healthy else 503
    )


async def list_flows(request: web.Request) -> web.Response:
    flows = request.app[RUNTIME].registry.flows
    return web.json_response(
        {
            "flows": [
                {
                    "id": f.id,
                    "name": f.name,
                    "language": f.language,
                    "version": f.version,
                    "nodes": len(f.nodes),
                    "expire_after": f.expire_after,
                }
                for f in flows.values()
            ]
        }
    )


async def reload_flows(request: web.Request) -> web.Response:
    report = request.app[RUNTIME].load_flows()
    return web.json_response(
        {
            "loaded": report.loaded,
            "unchanged": report.unchanged,
            "kept": report.kept,
            "removed": report.removed,
            "problems": [str(p) for p in report.problems],
        },
        status=200,
    )


async def _contact(request: web.Request) -> dict[str, Any]:
    contact = await request.app[RUNTIME].store.get_contact(request.match_info["uuid"])
    if contact is None:
        raise ApiError(404, "unknown_contact", f"no contact {request.match_info['uuid']}")
    return contact


async def contact_runs(request: web.Request) -> web.Response:
    contact = await _contact(request)
    store = request.app[RUNTIME].store
    session = Session.from_json(await store.session_raw(contact["uuid"]))
    active = [frame["run"] for frame in reversed(session.frames)]
    ended = await store.ended_runs(contact["uuid"])
    return web.json_response({"runs": active + ended})


async def contact_messages(request: web.Request) -> web.Response:
    contact = await _contact(request)
    messages = await request.app[RUNTIME].store.messages(contact["uuid"])
    return web.json_response({"messages": messages})


async def contact_history(request: web.Request) -> web.Response:
    """One timeline of a contact: messages in and out (with status and error) and its runs'
    events (started, and how each ended: completed, interrupted, expired, failed), oldest
    first. Derived from the records kept anyway, so it costs nothing to keep in step."""
    contact = await _contact(request)
    store = request.app[RUNTIME].store
    session = Session.from_json(await store.session_raw(contact["uuid"]))
    runs = [frame["run"] for frame in session.frames] + await store.ended_runs(contact["uuid"])
    # (at, order, item): at one instant an older run ends first (the start that interrupts it
    # comes after), then runs start, then messages; a run begun in that instant ends last
    timeline: list[tuple[float, int, dict[str, Any]]] = []
    for run in runs:
        base = {"run": run["uuid"], "flow": run["flow"]}
        started = float(run["created_on"])
        timeline.append((started, 0, {"type": "run_started", "at": started, **base}))
        if run.get("exited_on") is not None:
            ended = float(run["exited_on"])
            errors = run.get("errors") or []
            reason = errors[-1].get("message") if errors else None
            item = {"type": f"run_{run['status']}", "at": ended, **base}
            if reason:
                item["reason"] = reason
            timeline.append((ended, 2 if ended == started else -1, item))
    for message in await store.messages(contact["uuid"]):
        at = float(message.get("created_on") or 0)
        kind = "message_in" if message.get("direction") == "in" else "message_out"
        timeline.append((at, 1, {"type": kind, "at": at, "message": message}))
        if message.get("action") in ("opt_out", "opt_in"):
            kind = "opted_out" if message["action"] == "opt_out" else "opted_in"
            timeline.append((at, 1, {"type": kind, "at": at}))
    timeline.sort(key=lambda entry: (entry[0], entry[1]))
    return web.json_response(
        {"contact": contact["uuid"], "history": [item for _, _, item in timeline]}
    )


async def start_contact(request: web.Request) -> web.Response:
    """Start (or restart) one contact in a flow; any run it is waiting in is interrupted."""
    contact = await _contact(request)
    body = await json_body(request)
    runtime = request.app[RUNTIME]
    flow = body.get("flow")
    if not isinstance(flow, str) or flow not in runtime.registry.flows:
        raise ApiError(
            404, "unknown_flow", f"no flow {flow!r}", {"flows": sorted(runtime.registry.flows)}
        )
    params = body.get("params") or {}
    if not isinstance(params, dict):
        raise ApiError(400, "bad_request", "params must be an object")
    await runtime.store.enqueue(
        contact["uuid"],
        {"type": "start", "flow": flow, "params": params, "at": runtime.clock.now()},
    )
    return web.json_response({"queued": True, "contact": contact["uuid"], "flow": flow}, status=202)


async def channel_webhook(request: web.Request) -> web.StreamResponse:
    """``/webhooks/<type>/<name>``: the channel parses (and may refuse, with a JSON error), the
    core ingests its events, then ``200 ok`` (or the channel's own answer, e.g. a challenge)."""
    runtime = request.app[RUNTIME]
    channel = runtime.channels.get(request.match_info["name"])
    if channel is None or request.match_info["type"] != channel.TYPE:
        raise ApiError(
            404,
            "not_found",
            f"no {request.match_info['type']} channel {request.match_info['name']!r}",
        )
    inbound = await channel.parse(request)
    if inbound.events:
        try:
            await runtime.ingest.accept(inbound.events)
        except RedisError:
            # nothing was lost: the provider redelivers what we do not acknowledge
            log.exception("could not queue a webhook for %s; asking to redeliver", channel.name)
            raise ApiError(
                503, "redis_unavailable", "the webhook could not be queued; deliver it again"
            ) from None
    return inbound.reply or web.Response(text="ok")


async def list_templates(request: web.Request) -> web.Response:
    """Synced templates of every channel, filtered by ?channel=, status=, language=, name=."""
    runtime = request.app[RUNTIME]
    q = request.query
    out = []
    for name in runtime.channels:
        if q.get("channel") and q["channel"] != name:
            continue
        for t in await runtime.store.templates(name):
            if q.get("status") and t.get("status") != q["status"].upper():
                continue
            if q.get("language") and t.get("language") != q["language"]:
                continue
            if q.get("name") and t.get("name") != q["name"]:
                continue
            out.append({"channel": name, **t})
    return web.json_response({"templates": out})


async def sync_templates(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    synced: dict[str, Any] = {}
    for name, channel in runtime.channels.items():
        try:
            count = await channel.sync_templates()
        except Exception as exc:  # one channel's failure is reported, the others still sync
            synced[name] = {"error": str(exc)}
            continue
        if count is not None:
            synced[name] = {"templates": count}
    return web.json_response({"synced": synced})


async def channel_media(request: web.Request) -> web.StreamResponse:
    """An inbound attachment, fetched from the provider on demand (it is not stored here)."""
    channel = request.app[RUNTIME].channels.get(request.match_info["name"])
    if channel is None:
        raise ApiError(404, "not_found", f"no channel {request.match_info['name']!r}")
    media_id = request.match_info["media_id"]
    if not channel.MEDIA_ID.fullmatch(media_id):
        raise ApiError(400, "bad_request", f"not a media id of this channel: {media_id!r}")
    media = await channel.fetch_media(media_id)
    if media is None:
        raise ApiError(404, "not_found", f"no media {request.match_info['media_id']!r}")
    content, mime = media
    return web.Response(body=content, content_type=mime.split(";")[0].strip() or None)


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_route("GET", "/webhooks/{type}/{name}", channel_webhook)
    app.router.add_route("POST", "/webhooks/{type}/{name}", channel_webhook)
    app.router.add_get("/api/v1/flows", list_flows)
    app.router.add_post("/api/v1/flows/reload", reload_flows)
    app.router.add_get("/api/v1/templates", list_templates)
    app.router.add_get("/api/v1/channels/{name}/media/{media_id}", channel_media)
    app.router.add_post("/api/v1/templates/sync", sync_templates)
    app.router.add_get("/api/v1/contacts/{uuid}/runs", contact_runs)
    app.router.add_get("/api/v1/contacts/{uuid}/messages", contact_messages)
    app.router.add_get("/api/v1/contacts/{uuid}/history", contact_history)
    app.router.add_post("/api/v1/contacts/{uuid}/start", start_contact)
    app.router.add_get("/api/v1/openapi.json", openapi.serve_openapi)
    api_contacts.setup_routes(app)  # contacts (create, list, find, update, delete, import), groups
    api_starts.setup_routes(app)  # starts: create, preview, list, get, contacts, cancel, retry
    api_runs.setup_routes(app)  # runs across contacts, a flow's stats


def create_app(config: Config, runtime: Runtime | None = None) -> web.Application:
    """The app; the runtime (Redis, workers, channels) lives and dies with it."""
    app = web.Application(
        middlewares=[errors_middleware], client_max_size=config.server.max_body_bytes
    )
    runtime = runtime or Runtime(config)
    app[RUNTIME] = runtime
    app[TOKEN] = admin_token(config)

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        if not runtime.registry.flows:
            runtime.load_flows()
        await runtime.start()
        yield
        await runtime.stop()

    setup_routes(app)
    for name, cfg in config.channels.items():  # e.g. a WhatsApp sandbox (graph_url = "sandbox")
        for mount in channel_class(cfg.type).mounts(name, cfg, config.server.url):
            app.add_subapp(mount.prefix, mount.app)
    app.cleanup_ctx.append(lifetime)
    return app
