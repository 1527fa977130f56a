"""What ``chasqui serve`` prints once it listens: where Studio is, how to sign in (where the
admin token is kept, never the token itself), and the pages channels add to Studio (the
WhatsApp sandbox's phone)."""

from __future__ import annotations

from aiohttp import web

from bot.api.studio.render import NAV_KEY
from bot.core.config import Config

STUDIO = "/studio/"


def token_location(config: Config) -> str:
    """Where the admin token is: the setting that holds it, or the file it was generated into."""
    if config.server.admin_token.get_secret_value():
        return "server.admin_token in the config (or CHASQUI_SERVER__ADMIN_TOKEN)"
    return str(config.resolve(config.redis.data_dir) / "admin-token")


def channel_pages(app: web.Application) -> list[tuple[str, str]]:
    """(path, label) of the pages channels added to Studio's menu."""
    for resource in app.router.resources():
        info = resource.get_info()
        sub = info.get("app")
        if isinstance(sub, web.Application) and info.get("prefix") == STUDIO.rstrip("/"):
            nav: list[tuple[str, str]] = sub.get(NAV_KEY, [])
            return [(path, label) for path, label in nav if path.startswith(STUDIO + "channels/")]
    return []


def where(config: Config, app: web.Application) -> str:
    base = config.server.url
    lines = [
        f"Chasqui is serving on {base}",
        f"  Studio:  {base}{STUDIO}  (sign in with the admin token: {token_location(config)})",
    ]
    for path, label in channel_pages(app):
        name = path.removeprefix(STUDIO + "channels/").split("/", 1)[0]
        lines.append(f"  {label} ({name}):  {base}{path}")
    lines.append(f"  API:     {base}/api/v1/  (Authorization: Bearer <the same token>)")
    return "\n".join(lines)
