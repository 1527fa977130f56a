"""Channels' admin routes: an inbound attachment fetched from the provider on demand."""

from __future__ import annotations

from aiohttp import web

from bot.api.context import runtime
from bot.api.routes import Op
from bot.core.errors import ApiError


async def channel_media(request: web.Request) -> web.StreamResponse:
    """An inbound attachment, fetched from the provider on demand (it is not stored here)."""
    channel = runtime(request).channels.get(request.match_info["name"])
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


OPS = [
    Op(
        "GET",
        "/api/v1/channels/{name}/media/{media_id}",
        channel_media,
        "An inbound attachment, fetched from the provider",
        None,
        errors=("bad_request", "not_found"),
        doc={
            "responses": {
                "200": {
                    "description": "The attachment's bytes, with its media type.",
                    "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
                }
            }
        },
    )
]
