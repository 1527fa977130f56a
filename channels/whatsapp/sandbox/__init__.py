"""A WhatsApp sandbox: an in-memory stand-in for Meta's Graph API (see docs/sandbox.md).

Chasqui's WhatsApp channel talks to it over real HTTP exactly as it would to
``https://graph.facebook.com``; it answers sends with Meta's shapes and error codes, and posts
signed webhooks (user messages, statuses, template reviews) back to Chasqui.
"""

from channels.whatsapp.sandbox.app import create_sandbox_app, run_sandbox
from channels.whatsapp.sandbox.config import SandboxConfig, SandboxNumber, demo_config
from channels.whatsapp.sandbox.context import SANDBOX_DISPATCHER, SANDBOX_STATE
from channels.whatsapp.sandbox.webhooks import encode, sign

__all__ = [
    "SANDBOX_DISPATCHER",
    "SANDBOX_STATE",
    "SandboxConfig",
    "SandboxNumber",
    "create_sandbox_app",
    "demo_config",
    "encode",
    "run_sandbox",
    "sign",
]
