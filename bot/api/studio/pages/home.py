"""Home: the channels and their health, at a glance."""

from __future__ import annotations

from aiohttp import web

from bot.api.context import runtime
from bot.api.studio.render import page

routes = web.RouteTableDef()


@routes.get("/")
async def home(request: web.Request) -> web.StreamResponse:
    channels = [
        {"name": name, "type": channel.TYPE, **channel.health()}
        for name, channel in sorted(runtime(request).channels.items())
    ]
    return await page(request, "home/index.html", channels=channels)
