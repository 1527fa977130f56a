"""``GET /healthz``: is Redis reachable, are the channels well; no token needed."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bot.api import models as m
from bot.api.context import runtime
from bot.api.routes import Op


async def healthz(request: web.Request) -> web.Response:
    rt = runtime(request)
    checks: dict[str, Any] = {"flows": len(rt.registry.flows)}
    try:
        await rt.store.ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"down: {type(exc).__name__}"
    channels = {name: ch.health() for name, ch in rt.channels.items()}
    if channels:
        checks["channels"] = channels
    healthy = checks["redis"] == "ok" and all(c["status"] == "ok" for c in channels.values())
    return web.json_response(
        {"status": "ok" if healthy else "unhealthy", **checks}, status=200 if healthy else 503
    )


OPS = [
    Op(
        "GET",
        "/healthz",
        healthz,
        "Health: Redis and every channel",
        m.Health,
        also=(503,),
        public=True,
    )
]
