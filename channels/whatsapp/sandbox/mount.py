"""The sandbox served by ``chasqui serve`` itself, for a channel with ``graph_url = "sandbox"``.

Imported by the WhatsApp channel only when such a channel is configured, so a production server
never loads the stand-in.
"""

from __future__ import annotations

from aiohttp import web

from channels.whatsapp.config import WhatsAppConfig
from channels.whatsapp.sandbox.app import create_sandbox_app
from channels.whatsapp.sandbox.config import SandboxConfig, SandboxNumber


def sandbox_for(
    name: str, settings: WhatsAppConfig, base_url: str, admin_token: str
) -> web.Application:
    """A stand-in of the Graph API for the channel ``name``, posting webhooks back to us; its
    ``/_fake`` controls take ``admin_token`` (the server's)."""
    number = SandboxNumber(
        settings.phone_number_id,
        settings.display_phone_number or "15550142200",
        f"{base_url}/webhooks/whatsapp/{name}",
    )
    sandbox = SandboxConfig(
        app_secret=settings.app_secret.get_secret_value(),
        verify_token=settings.verify_token.get_secret_value(),
        access_tokens={settings.access_token.get_secret_value()},
        waba_id=settings.waba_id,
        numbers=[number],
        admin_token=admin_token,
    )
    return create_sandbox_app(sandbox)
