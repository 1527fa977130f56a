"""The records the engine hands to the store: runs and messages, as ``TypedDict``\\ s.

They are plain dicts at run time -- the shape stored as JSON in Redis and answered by the API --
so typing them costs nothing on the hot path (measured against dataclasses and pydantic models
in docs/engine.md). Keys marked ``Required`` are always there; the others only when they apply.
"""

from __future__ import annotations

from typing import Any, Literal, Required, TypedDict


class Result(TypedDict, total=False):
    """One ``@results.<name>``: its value, category, the node that set it, when."""

    value: Required[str]
    category: Required[str]
    node: Required[str]
    at: Required[float]
    input: str  # the reply it was read from


class RunError(TypedDict, total=False):
    """Something that went wrong in a run, kept on it (a send refused, how it ended)."""

    node: str | None
    code: str | None
    message: str
    at: float


class Run(TypedDict, total=False):
    uuid: Required[str]
    flow: Required[str]
    version: Required[Any]  # the flow version it runs on (bot/flow/files.py)
    status: Required[str]  # a bot.core.runstatus.RunStatus
    created_on: Required[float]
    modified_on: Required[float]
    path: Required[list[list[Any]]]  # [node id, entered at], at most MAX_PATH of them
    results: Required[dict[str, Result]]
    errors: Required[list[RunError]]
    params: Required[dict[str, Any]]
    parent: str  # the run of the flow that entered this one
    start: str  # the start record that began it
    trigger: dict[str, Any]  # the trigger that began it: type, keyword, text, channel
    opened: bool  # its start's first message went out
    exited_on: float
    webhook: Any  # the JSON answer of its last call_webhook
    path_truncated: bool


class Message(TypedDict, total=False):
    """A message in or out, as kept in the contact's history and (out) its outbox."""

    uuid: Required[str]
    direction: Required[Literal["in", "out"]]
    contact: Required[str]
    channel: Required[str | None]
    urn: Required[str | None]
    status: Required[str]
    created_on: Required[float]
    text: str
    run: str | None
    flow: str
    node: str
    start: str
    opening: bool  # the first message of its start to the contact
    kind: str  # a message outside any run (an opt-out confirmation)
    action: str  # opt_out / opt_in: the inbound message was a stop or start word
    error: dict[str, Any]
    # what a node sends
    quick_replies: list[str]
    attachment: str
    template: dict[str, Any]
    preview_url: bool
    reply_to: str
    # what a channel told about an inbound message (bot.engine.events.INBOUND_DETAILS)
    external_id: str
    msg_type: str
    payload: Any
    media: Any
    location: Any
    sent_at: float
    contacts: Any
    reaction: Any
