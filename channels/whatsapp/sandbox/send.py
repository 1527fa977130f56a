"""The send pipeline, in the order of reference 12.1, and the statuses each send earns."""

from __future__ import annotations

from typing import Any

from channels.whatsapp.sandbox.bubbles import send_view
from channels.whatsapp.sandbox.chats import Bubble
from channels.whatsapp.sandbox.config import SandboxNumber
from channels.whatsapp.sandbox.errors import GraphError, status_error
from channels.whatsapp.sandbox.state import ErrorRule, SandboxState
from channels.whatsapp.sandbox.validate import Send, invalid, validate_send
from channels.whatsapp.sandbox.webhooks import Dispatcher, StatusEvent


def handle_send(
    state: SandboxState, dispatcher: Dispatcher, number: SandboxNumber, body: Any
) -> dict[str, Any]:
    """The 200 answer for a valid send (or mark-as-read); raises ``GraphError`` otherwise."""
    if not isinstance(body, dict):
        raise invalid("the body must be a JSON object")
    if body.get("messaging_product") != "whatsapp":
        raise invalid('messaging_product must be "whatsapp"')
    if body.get("status") == "read":
        message_id = body.get("message_id")
        if not isinstance(message_id, str) or message_id not in state.inbound_ids:
            raise invalid(f"message_id {message_id!r} is not a message this number received")
        state.chats.tick(message_id, "read")
        return {"success": True}
    send = validate_send(body, state.templates)
    rule = state.take_rule(send)
    if rule is not None and rule.mode == "sync":
        raise GraphError(rule.code, rule.details, http_status=rule.http_status)
    now = state.now()
    pnid = number.phone_number_id
    if not state.take_throughput(pnid, now):
        raise GraphError(130429)
    if not state.take_pair(pnid, send.key, now):
        raise GraphError(131056)
    window = state.window_open(pnid, send, now)
    failure: int | None = None
    if rule is not None:
        failure = rule.code
    elif send.template is None and not window:
        if state.config.window_mode == "sync":
            raise GraphError(131047)
        failure = 131047
    wamid = state.new_wamid()
    state.remember(wamid, pnid, send)
    _show(state, pnid, send, wamid, body)
    schedule_statuses(state, dispatcher, number, send, wamid, window, failure, rule)
    contact: dict[str, str] = {"input": send.input}
    if send.wa_id is not None:
        contact["wa_id"] = send.wa_id
    else:
        contact["user_id"] = send.key
    message: dict[str, str] = {"id": wamid}
    if send.template is not None:
        message["message_status"] = "accepted"
    return {"messaging_product": "whatsapp", "contacts": [contact], "messages": [message]}


def _show(state: SandboxState, pnid: str, send: Send, wamid: str, body: dict[str, Any]) -> None:
    """The send, as a bubble on the user's sandbox phone."""
    bubble = Bubble(
        wamid,
        out=True,
        at=state.now(),
        view=send_view(body, send.template),
        recipient_id=send.wa_id or state.wa_ids.get(send.key),
        user_id=send.user_id,
        biz_opaque=send.biz_opaque,
    )
    state.chats.add(state.chats.chat(pnid, send.key), bubble)


def pricing(send: Send, window: bool) -> dict[str, Any]:
    """Per-message pricing (PMP): templates are charged, except utility ones in the window."""
    if send.template is None:
        return {
            "billable": False,
            "pricing_model": "PMP",
            "type": "free_customer_service",
            "category": "service",
        }
    category = send.template.category.lower()
    free = category == "utility" and window
    return {
        "billable": not free,
        "pricing_model": "PMP",
        "type": "free_customer_service" if free else "regular",
        "category": category,
    }


def schedule_statuses(
    state: SandboxState,
    dispatcher: Dispatcher,
    number: SandboxNumber,
    send: Send,
    wamid: str,
    window: bool,
    failure: int | None,
    rule: ErrorRule | None,
) -> None:
    if not state.config.statuses:
        return
    sent_at, delivered_at, read_at = state.config.status_delays
    recipient = send.wa_id or state.wa_ids.get(send.key)
    user_id = send.user_id

    def event(status: str, **extra: Any) -> StatusEvent:
        return StatusEvent(number, wamid, status, recipient, user_id, send.biz_opaque, **extra)

    if failure is not None:
        detail = rule.details if rule is not None else None
        errors = [status_error(failure, detail)]
        dispatcher.schedule(sent_at, ("status", event("failed", errors=errors)))
        return
    price = pricing(send, window)
    skip_delivered = state.take_fault("skip_delivered")
    delays = [sent_at, delivered_at, read_at]
    if state.take_fault("read_before_sent"):
        delays.reverse()
    dispatcher.schedule(delays[0], ("status", event("sent", pricing=price)))
    # On the sandbox phone a chat can hold its reads back until "mark as read".
    read = state.chats.auto_read(number.phone_number_id, send.key)
    if not skip_delivered:
        dispatcher.schedule(delays[1], ("status", event("delivered", pricing=price)))
        if read:
            dispatcher.schedule(delays[2], ("status", event("read")))
    else:  # pricing then rides on `read` (never on both delivered and read)
        dispatcher.schedule(delays[2], ("status", event("read", pricing=price)))
