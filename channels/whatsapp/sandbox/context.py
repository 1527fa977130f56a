"""What the sandbox's handlers share: the app's state and webhook dispatcher, by typed keys."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from channels.whatsapp.sandbox.state import SandboxState
from channels.whatsapp.sandbox.webhooks import Dispatcher, Post, template_envelope

SANDBOX_STATE = web.AppKey("sandbox_state", SandboxState)
SANDBOX_DISPATCHER = web.AppKey("sandbox_dispatcher", Dispatcher)


def state_of(request: web.Request) -> SandboxState:
    return request.app[SANDBOX_STATE]


def dispatcher_of(request: web.Request) -> Dispatcher:
    return request.app[SANDBOX_DISPATCHER]


def all_urls(state: SandboxState) -> list[str]:
    return list(dict.fromkeys(n.webhook_url for n in state.config.numbers))


def template_posts(state: SandboxState, value: dict[str, Any]) -> list[Post]:
    obj = template_envelope(state.config.waba_id, state.now(), value)
    summary = [f"template:{value['message_template_id']}:{value['event']}"]
    return [(url, "template", obj, summary) for url in all_urls(state)]
