"""The aiohttp application factory: the runtime in the app (typed keys, :mod:`bot.api.context`),
the middleware, every resource module's operations, the channels' webhooks and sub-apps, and
the runtime's lifetime."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web
from redis.exceptions import RedisError

from bot.api import channels, contacts, flows, groups, health, runs, starts, templates
from bot.api.context import RUNTIME, TOKEN, runtime
from bot.api.middleware import errors_middleware
from bot.api.openapi import openapi_document
from bot.api.routes import Op, setup_routes
from bot.api.studio.app import studio_app
from bot.core.config import Config
from bot.core.errors import ApiError
from bot.work.runtime import Runtime, admin_token
from channels.protocol import channel_class

log = logging.getLogger("chasqui.server")

# every operation of the API, in the order the document lists them
OPS: list[Op] = [
    *health.OPS,
    *flows.OPS,
    *contacts.OPS,
    *runs.OPS,
    *groups.OPS,
    *starts.OPS,
    *templates.OPS,
    *channels.OPS,
]


async def serve_openapi(request: web.Request) -> web.Response:
    """``GET /api/v1/openapi.json`` (behind the admin token, like all of /api/v1)."""
    return web.json_response(openapi_document(OPS))


async def channel_webhook(request: web.Request) -> web.StreamResponse:
    """``/webhooks/<type>/<name>``: the channel parses (and may refuse, with a JSON error), the
    core ingests its events, then ``200 ok`` (or the channel's own answer, e.g. a challenge)."""
    rt = runtime(request)
    channel = rt.channels.get(request.match_info["name"])
    if channel is None or request.match_info["type"] != channel.TYPE:
        raise ApiError(
            404,
            "not_found",
            f"no {request.match_info['type']} channel {request.match_info['name']!r}",
        )
    inbound = await channel.parse(request)
    if inbound.events:
        try:
            await rt.ingest.accept(inbound.events)
        except RedisError:
            # nothing was lost: the provider redelivers what we do not acknowledge
            log.exception("could not queue a webhook for %s; asking to redeliver", channel.name)
            raise ApiError(
                503, "redis_unavailable", "the webhook could not be queued; deliver it again"
            ) from None
    return inbound.reply or web.Response(text="ok")


async def to_studio(request: web.Request) -> web.StreamResponse:
    """``/``: a person who opens the server's address lands on Studio."""
    raise web.HTTPFound(location="/studio/")


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

    app.router.add_route("GET", "/webhooks/{type}/{name}", channel_webhook)
    app.router.add_route("POST", "/webhooks/{type}/{name}", channel_webhook)
    app.router.add_get("/api/v1/openapi.json", serve_openapi)
    setup_routes(app, OPS)
    pages = []
    for name, cfg in config.channels.items():  # e.g. a WhatsApp sandbox (graph_url = "sandbox")
        kind = channel_class(cfg.type)
        mounts = kind.mounts(name, cfg, config.server.url, app[TOKEN])
        for mount in mounts:
            app.add_subapp(mount.prefix, mount.app)
        pages += [(name, page) for page in kind.studio_pages(name, cfg, mounts)]
    app.router.add_get("/", to_studio)
    app.add_subapp("/studio/", studio_app(pages))
    app.cleanup_ctx.append(lifetime)
    return app
