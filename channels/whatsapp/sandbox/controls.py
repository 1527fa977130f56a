"""The sandbox's ``/_fake`` controls: play the user (inbound messages, taps), inject Graph
errors and webhook faults, move the clock, seed and review templates, read what was sent and
posted, flush, reset. Every one requires the admin token (checked by the app's middleware).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web

from channels.whatsapp.sandbox.bubbles import inbound_view
from channels.whatsapp.sandbox.chats import Bubble
from channels.whatsapp.sandbox.config import SandboxNumber
from channels.whatsapp.sandbox.context import dispatcher_of, state_of, template_posts
from channels.whatsapp.sandbox.inbound import InboundError, build_message
from channels.whatsapp.sandbox.state import FAULTS, ErrorRule, SandboxState
from channels.whatsapp.sandbox.templates import status_value
from channels.whatsapp.sandbox.webhooks import (
    Delivery,
    Dispatcher,
    inbound_value,
    messages_envelope,
)


class FakeError(Exception):
    """A bad request to a ``/_fake`` control: 400 with a plain message."""


async def _fake_body(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.read() or b"{}")
    except ValueError:
        raise FakeError("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise FakeError("the body must be a JSON object")
    return body


async def fake_inbound(request: web.Request) -> web.Response:
    body = await _fake_body(request)
    specs = body["messages"] if isinstance(body.get("messages"), list) else [body]
    if not specs or not all(isinstance(s, dict) for s in specs):
        raise FakeError("give one message, or 'messages': [message, ...] for one POST")
    pnid = specs[0].get("phone_number_id") or body.get("phone_number_id")
    ids, deliveries = await play_user(
        state_of(request), dispatcher_of(request), specs, pnid, wait=body.get("wait", True)
    )
    return web.json_response(
        {
            "id": ids[0],
            "ids": ids,
            "delivery": deliveries[0].public(with_payload=False),
        }
    )


async def play_user(
    state: SandboxState,
    dispatcher: Dispatcher,
    specs: list[dict[str, Any]],
    pnid: Any = None,
    *,
    wait: bool = True,
) -> tuple[list[str], list[Delivery]]:
    """Users write (or tap): build each message, post them signed in one webhook, as Meta
    would; with ``wait``, return once Chasqui answered. Raises ``FakeError`` on a bad spec."""
    number = state.numbers.get(str(pnid or state.config.numbers[0].phone_number_id))
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
            _show(state, number.phone_number_id, who, spec, message)
    except InboundError as exc:
        raise FakeError(str(exc)) from None
    obj = messages_envelope(
        state.config.waba_id,
        [inbound_value(number, contacts, messages) for contacts, messages in changes.values()],
    )
    deliveries = dispatcher.post(number.webhook_url, "messages", obj, ids)
    for delivery in deliveries:
        if delivery.task is not None:
            delivery.task.add_done_callback(_ticks(state, delivery, ids))
    if wait:
        await dispatcher.wait(deliveries)
    return ids, deliveries


def _ticks(state: SandboxState, delivery: Delivery, ids: list[str]) -> Callable[[Any], None]:
    def done(_task: Any) -> None:
        for wamid in ids:
            state.chats.received(wamid, delivery.delivered)

    return done


def _show(
    state: SandboxState, pnid: str, who: str, spec: dict[str, Any], message: dict[str, Any]
) -> None:
    """The user's message, as their own bubble on the sandbox phone (named as the spec named
    the user; the profile's stand-in name is not worth showing)."""
    chat = state.chats.chat(pnid, who)
    chat.name = str(spec.get("name") or chat.name)
    at = float(message.get("timestamp") or state.now())
    state.chats.add(chat, Bubble(message["id"], out=False, at=at, view=inbound_view(message)))


async def fake_errors(request: web.Request) -> web.Response:
    state = state_of(request)
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
    state = state_of(request)
    if request.method == "POST":
        body = await _fake_body(request)
        advance, at = body.get("advance"), body.get("set")
        for value in (advance, at):
            if value is not None and not isinstance(value, int | float):
                raise FakeError("'advance' and 'set' take seconds")
        state.set_clock(advance=advance, at=at)
    return web.json_response({"now": state.now(), "offset": state.offset})


async def fake_templates(request: web.Request) -> web.Response:
    state, dispatcher = state_of(request), dispatcher_of(request)
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
            for url, kind, obj, summary in template_posts(state, value):
                deliveries += dispatcher.post(url, kind, obj, summary)
        await dispatcher.wait(deliveries)
        out["updated"] = [t.id for t in found]
        out["deliveries"] = [d.public(with_payload=False) for d in deliveries]
    return web.json_response(out)


async def fake_webhook_faults(request: web.Request) -> web.Response:
    state = state_of(request)
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
    for record in state_of(request).sent:
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
        for d in dispatcher_of(request).records
        if d.seq > since and ("kind" not in q or d.kind == q["kind"])
    ]
    limit = _limit(request)
    return web.json_response(
        {"data": records[-limit:] if limit else records, "pending": dispatcher_of(request).pending}
    )


async def fake_flush(request: web.Request) -> web.Response:
    return web.json_response({"posted": await dispatcher_of(request).flush()})


async def fake_reset(request: web.Request) -> web.Response:
    state_of(request).reset()
    dispatcher_of(request).clear()
    return web.json_response({"reset": True})


async def fake_verify(request: web.Request) -> web.Response:
    """Play the dashboard's verification GET against one number's webhook URL."""
    state, dispatcher = state_of(request), dispatcher_of(request)
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


def add_controls(router: web.UrlDispatcher) -> None:
    """Register every ``/_fake`` route on the sandbox app's router."""
    router.add_post("/_fake/inbound", fake_inbound)
    router.add_route("*", "/_fake/errors", fake_errors)
    router.add_route("*", "/_fake/clock", fake_clock)
    router.add_route("*", "/_fake/templates", fake_templates)
    router.add_route("*", "/_fake/webhook-faults", fake_webhook_faults)
    router.add_get("/_fake/sent", fake_sent)
    router.add_get("/_fake/webhooks", fake_webhooks)
    router.add_post("/_fake/flush", fake_flush)
    router.add_post("/_fake/reset", fake_reset)
    router.add_post("/_fake/verify", fake_verify)
