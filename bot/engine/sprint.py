"""One contact's state while its events are applied, and what those events did.

A :class:`Sprint` holds the contact and its session (the stack of active runs) as loaded from
Redis, and collects the effects -- changed records, ended runs, messages to send, timers to set
or drop, a webhook to call -- that the worker commits in one step. Node kinds act only through
the part of it that :class:`~bot.flow.context.RunContext` declares; nothing here does I/O.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, cast

from bot.core import counters as flowstats
from bot.core.records import Message, Run
from bot.core.runstatus import RunStatus
from bot.engine.optout import OptOut
from bot.flow.expressions import compile_text
from bot.flow.files import Flow

MAX_PATH = 500  # path entries kept per run; a longer run records that it was truncated


@dataclass(frozen=True)
class Limits:
    max_steps: int = 100
    max_reply_age: int = 3600  # older inbound messages are recorded, not answered
    window_margin: int = 120  # free text stops this long before the window closes
    loop_repeats: int = 20
    loop_window: int = 300
    default_expire: int = 7 * 86400
    opt_out: OptOut = field(default_factory=OptOut)


@dataclass(frozen=True)
class Route:
    """What the engine needs to know of a channel to address a message through it."""

    name: str
    schemes: tuple[str, ...]
    # Seconds after a contact's last inbound message during which free text may be sent
    # (WhatsApp's 24-hour customer service window); None: the channel has no such window.
    window: int | None = None
    # The channel sends a message's template instead of its text (WhatsApp); others the text.
    templates: bool = False
    # Quick replies one message may carry as buttons, or as rows of a list; more than both
    # (a channel without buttons: 0) go as numbered options in the text.
    buttons: int = 0
    list_rows: int = 0


class Session:
    """A contact's runtime state: its stack of active runs, its wait, its recent sends."""

    __slots__ = ("frames", "recent", "wait")

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []  # {"flow", "node", "run": {...}}, innermost last
        self.wait: dict[str, Any] | None = None  # {"token", "node", "run"}
        self.recent: list[list[Any]] = []  # [[text hash, sent at]] for the loop guard

    @classmethod
    def from_json(cls, raw: bytes | str | None) -> Session:
        session = cls()
        if raw:
            data = json.loads(raw)
            session.frames = data.get("frames", [])
            session.wait = data.get("wait")
            session.recent = data.get("recent", [])
        return session

    def to_json(self) -> str:
        data: dict[str, Any] = {"frames": self.frames}
        if self.wait:
            data["wait"] = self.wait
        if self.recent:
            data["recent"] = self.recent
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


REFUSED = {
    "no_route": "no channel reaches any of the contact's URNs",
    "outside_24h_window": "free text outside the contact's 24-hour window: only a template "
    "can open a conversation",
    "contact_opted_out": "the contact opted out",
    "contact_blocked": "the contact is blocked",
}
"""What each refusal decided here means, in words (a start's failed contacts show it)."""


def _refuse(message: Message, error: str) -> None:
    """A message that cannot go at all: failed here, it never reaches a channel."""
    message["status"] = "failed"
    message["error"] = {"code": error}


class LoopDetected(Exception):
    pass


def numbered(text: str, options: Sequence[str]) -> str:
    """``text`` followed by the options as a numbered list, for a channel without buttons."""
    listed = "\n".join(f"{i}. {option}" for i, option in enumerate(options, 1))
    return f"{text}\n\n{listed}" if text else listed


OPTION_NUMBER = re.compile(r"^\s*#?\s*(\d{1,2})\s*[.)]?\s*$")


def chosen_option(text: str, options: Sequence[str] | None) -> str | None:
    """The option a reply like ``2`` (or ``2.``) picks among the numbered ones offered."""
    found = OPTION_NUMBER.match(text) if options else None
    if found is None or options is None:
        return None
    index = int(found.group(1))
    return options[index - 1] if 0 < index <= len(options) else None


def _for_channel(content: dict[str, Any], route: Route) -> dict[str, Any]:
    """What this channel will really send: the template alone where templates are used (it
    carries its own buttons and header), the text and the rest elsewhere; quick replies as
    buttons where they fit, else numbered in the text. Recording only that keeps the history
    true to what the contact saw, and the record small."""
    if route.templates and content.get("template"):
        return {"template": content["template"]}
    if "template" in content and (content.get("text") or content.get("attachment")):
        content = {k: v for k, v in content.items() if k != "template"}
    options = content.get("quick_replies")
    if options and len(options) > max(route.buttons, route.list_rows) and "template" not in content:
        content = {k: v for k, v in content.items() if k != "quick_replies"}
        content["text"] = numbered(content.get("text") or "", options)
    return content  # a template alone stays: the channel shows or refuses it


class Rules(Protocol):
    """What a sprint asks of the engine that runs it: the flows, the limits, the routes.

    A protocol, not the :class:`~bot.engine.apply.Engine` itself, so that the engine imports the
    sprint and not the other way round.
    """

    @property
    def flows(self) -> Mapping[str, Flow]: ...

    @property
    def limits(self) -> Limits: ...

    def route_for(self, contact: dict[str, Any]) -> tuple[Route, str] | None: ...


@dataclass
class Sprint:
    """One contact's batch of events: state in, effects out. Node kinds call its methods."""

    engine: Rules
    contact: dict[str, Any]
    session: Session
    now: float
    # effects, committed together by the worker
    contact_dirty: bool = False
    session_dirty: bool = False
    ended_runs: list[Run] = field(default_factory=list)
    new_runs: list[Run] = field(default_factory=list)
    # (flow id, counter field) -> change, for the flow's stats (bot/core/counters.py)
    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    messages: list[Message] = field(default_factory=list)
    timers_add: dict[str, float] = field(default_factory=dict)
    timers_remove: list[str] = field(default_factory=list)
    group_changes: dict[str, bool] = field(default_factory=dict)  # name -> added (or removed)
    webhook_request: dict[str, Any] | None = None
    # scratch for the event being applied
    input_text: str = ""
    input_alternates: list[str] = field(default_factory=list)  # button payload, reply id
    input_external_id: str | None = None  # the provider's id of the message being answered
    offered: list[str] | None = None  # options sent numbered in this event: a wait keeps them
    _subflow: str | None = None
    _steps: int = 0
    _context: dict[str, Any] | None = None

    # -- what the engine does at each event ----------------------------------------------------
    def begin(self, at: float | None) -> None:
        """A new event: its time (never before the last one's), a fresh step budget and input."""
        # times are kept to the millisecond: enough for ordering, and shorter in Redis
        self.now = round(max(self.now, self.now if at is None else at), 3)
        self._steps = 0
        self._context = None
        self.input_text = ""
        self.input_alternates = []
        self.input_external_id = None
        self.offered = None

    def set_input(self, text: str, alternates: list[str], external_id: str | None) -> None:
        """The reply being answered: ``@input``, and the other readings case tests try."""
        self.input_text = text
        self.input_alternates = alternates
        self.input_external_id = external_id
        self._context = None

    def take_subflow(self) -> str | None:
        """The flow an ``enter_flow`` node asked to enter, once."""
        flow_id, self._subflow = self._subflow, None
        return flow_id

    # -- what nodes see --------------------------------------------------------------------
    @property
    def frame(self) -> dict[str, Any]:
        return self.session.frames[-1]

    @property
    def run(self) -> dict[str, Any]:
        run: dict[str, Any] = self.frame["run"]
        return run

    @property
    def flow(self) -> Flow:
        return self.engine.flows[self.frame["flow"]]

    def context(self) -> dict[str, Any]:
        """What expressions see; built once and reused until the contact, the node or the
        event changes (results and fields are the live dicts)."""
        if self._context is None:
            self._context = self._build_context()
        return self._context

    def _build_context(self) -> dict[str, Any]:
        c = self.contact
        name = c.get("name") or ""
        run = self.run if self.session.frames else {}
        route = self.engine.route_for(c)  # the URN of the channel that reaches the contact now
        return {
            "contact": {
                "uuid": c.get("uuid", ""),
                "name": name,
                "first_name": name.split()[0] if name.split() else "",
                "language": c.get("language") or "",
                "urn": route[1] if route else (c.get("urns") or [""])[0],
                "channel": c.get("channel") or "",
            },
            "fields": c.get("fields") or {},
            "results": run.get("results", {}),
            "input": {"text": self.input_text},
            "trigger": {
                "type": "start",
                "keyword": "",
                "text": "",
                **run.get("trigger", {}),
                "params": run.get("params", {}),
            },
            "webhook": run.get("webhook"),
            "run": {"uuid": run.get("uuid", "")},
            "now": datetime.fromtimestamp(self.now, UTC),
        }

    def render(self, text: str) -> str:
        compiled = compile_text(text)
        return compiled.render({}) if compiled.is_static else compiled.render(self.context())

    def contact_changed(self) -> None:
        self.contact_dirty = True
        self._context = None

    def entered(self, node_id: str) -> None:
        self._context = None  # the run may have changed (a sub-flow), and its webhook answer
        self.frame["node"] = node_id
        path = self.run["path"]
        if len(path) < MAX_PATH:
            path.append([node_id, self.now])
        elif not self.run.get("path_truncated"):
            self.run["path_truncated"] = True
        self._steps += 1
        if self._steps > self.engine.limits.max_steps:
            raise LoopDetected(f"more than {self.engine.limits.max_steps} steps for one event")

    def save_result(
        self, name: str, value: str, category: str, node_id: str, input_text: str | None = None
    ) -> None:
        result: dict[str, Any] = {
            "value": value,
            "category": category,
            "node": node_id,
            "at": self.now,
        }
        if input_text is not None:
            result["input"] = input_text
        previous = self.run["results"].get(name)
        before = previous.get("category") if previous else None
        if before != category:
            flow = self.frame["flow"]
            if before is not None:
                self.count(flow, flowstats.result(name, before), -1)
            self.count(flow, flowstats.result(name, category))
        self.run["results"][name] = result

    def count(self, flow: str, name: str, delta: int = 1) -> None:
        """Change one of a flow's counters when this sprint commits."""
        key = (flow, name)
        self.counts[key] = self.counts.get(key, 0) + delta

    def took(self, flow: str, node: str, exit_name: str) -> None:
        """A run left ``node`` by ``exit_name``."""
        self.count(flow, flowstats.exit_taken(node, exit_name))

    def change_groups(self, add: Sequence[str] = (), remove: Sequence[str] = ()) -> None:
        groups = [g for g in self.contact.get("groups", []) if g not in remove]
        groups += [g for g in add if g not in groups]
        self.contact["groups"] = groups
        self.group_changes.update({g: False for g in remove})
        self.group_changes.update({g: True for g in add})
        self.contact_dirty = True

    def request_webhook(self, request: dict[str, Any]) -> None:
        self.webhook_request = request

    def enter_subflow(self, flow_id: str) -> None:
        self._subflow = flow_id

    def wait(self, timeout: int | None) -> None:
        """Wait at the current node. One timer per wait: whichever of the timeout and the
        run's expiry comes first (after a timeout the run moves on and waits afresh)."""
        self.clear_wait()
        token = uuid.uuid4().hex[:10]
        expire = self.flow.expire_after
        kind, due = ("timeout", timeout) if timeout and timeout < expire else ("expire", expire)
        flow, node = self.frame["flow"], self.frame["node"]
        self.session.wait = {
            "token": token,
            "flow": flow,
            "node": node,
            "run": self.run["uuid"],
            "timer": kind,
        }
        if self.offered:  # a reply "2" picks the second (Engine._on_reply)
            self.session.wait["options"] = self.offered
        self.count(flow, flowstats.waiting(node))
        self.timers_add[f"{self.contact['uuid']}|{kind}|{token}"] = self.now + due
        self.run["status"] = RunStatus.WAITING

    def rearm_expiry(self) -> None:
        """The wait's timer fired as a timeout the flow no longer has: the same wait now ends
        only by a reply or the run's expiry, so that becomes its timer."""
        wait = self.session.wait
        assert wait is not None
        member = f"{self.contact['uuid']}|expire|{wait['token']}"
        self.timers_add[member] = self.now + self.flow.expire_after
        wait["timer"] = "expire"
        self.session_dirty = True

    def send(self, node_id: str, content: dict[str, Any]) -> str | None:
        """Queue a message for the contact; returns an error code when it cannot go at all."""
        route = self.engine.route_for(self.contact)
        if route is not None:
            given = content.get("quick_replies")
            content = _for_channel(content, route[0])
            if given:
                self.offered = None if content.get("quick_replies") else list(given)
        message = self._outgoing(
            route, content, run=self.run["uuid"], flow=self.frame["flow"], node=node_id
        )
        top = self.session.frames[0]["run"]
        start = top.get("start")  # its outcome counts for the start
        if start:
            message["start"] = start
            if not top.get("opened"):  # the start's first message to the contact
                message["opening"] = top["opened"] = True
        error = None
        if self.contact.get("status", "active") != "active":
            error = f"contact_{self.contact['status']}"
        else:
            error = self._unsendable(route, content)
        if error:
            _refuse(message, error)
            self.run["errors"].append({"node": node_id, "code": error, "at": self.now})
        else:
            self._guard_loop(content)
        self.messages.append(message)
        return error

    def notice(self, text: str, kind: str) -> str | None:
        """A message outside any run (an opt-out confirmation); sent whatever the contact's
        status. Returns an error code when it cannot go."""
        route = self.engine.route_for(self.contact)
        content = {"text": text}
        message = self._outgoing(route, content, kind=kind, run=None)
        error = self._unsendable(route, content)
        if error:
            _refuse(message, error)
        self.messages.append(message)
        return error

    def _outgoing(
        self, route: tuple[Route, str] | None, content: dict[str, Any], **extra: Any
    ) -> Message:
        """The record of a message to send: whom, through which channel, what, and why (the
        content's keys are those a node sends: see :class:`~bot.core.records.Message`)."""
        message: dict[str, Any] = {
            "uuid": str(uuid.uuid4()),
            "direction": "out",
            "contact": self.contact["uuid"],
            "channel": route[0].name if route else None,
            "urn": route[1] if route else None,
            **content,
            **extra,
            "status": "queued",
            "created_on": self.now,
        }
        return cast(Message, message)

    def _unsendable(self, route: tuple[Route, str] | None, content: dict[str, Any]) -> str | None:
        if route is None:
            return "no_route"
        if not self._window_allows(route[0], content):
            return "outside_24h_window"
        return None

    def _window_allows(self, route: Route, content: dict[str, Any]) -> bool:
        """A template may always go; free text only inside the contact's window, checked here
        so that an out-of-window message never reaches the provider."""
        if route.window is None or content.get("template"):
            return True
        last = (self.contact.get("last_inbound") or {}).get(route.name)
        margin = self.engine.limits.window_margin
        return last is not None and self.now < float(last) + route.window - margin

    def _guard_loop(self, content: dict[str, Any]) -> None:
        digest = hashlib.blake2b(
            json.dumps(content, sort_keys=True).encode(), digest_size=6
        ).hexdigest()
        limits = self.engine.limits
        since = self.now - limits.loop_window
        recent = [r for r in self.session.recent if r[1] >= since]
        if sum(1 for r in recent if r[0] == digest) + 1 >= limits.loop_repeats:
            raise LoopDetected(
                f"the same message {limits.loop_repeats} times in {limits.loop_window}s"
            )
        recent.append([digest, self.now])
        self.session.recent = recent[-limits.loop_repeats * 3 :]

    # -- run bookkeeping -------------------------------------------------------------------
    def clear_wait(self) -> None:
        """The run waits no more: its timer goes, and its node's waiting count."""
        wait = self.session.wait
        if wait:
            member = f"{self.contact['uuid']}|{wait.get('timer', 'expire')}|{wait['token']}"
            if self.timers_add.pop(member, None) is None:
                self.timers_remove.append(member)
            if wait.get("flow"):  # (a wait stored before flows had stats was never counted)
                self.count(wait["flow"], flowstats.waiting(wait["node"]), -1)
            self.session.wait = None

    def new_run(
        self,
        flow: Flow,
        params: dict[str, Any],
        parent: str | None,
        trigger: dict[str, Any] | None = None,
    ) -> Run:
        run: Run = {
            "uuid": str(uuid.uuid4()),
            "flow": flow.id,
            "version": flow.version,
            "status": RunStatus.ACTIVE,
            "created_on": self.now,
            "modified_on": self.now,
            "path": [],
            "results": {},
            "errors": [],
            "params": params,
        }
        if parent:
            run["parent"] = parent
        if trigger:
            run["trigger"] = trigger  # what a contact's message started it with (triggers.py)
            if not parent:
                self.count(flow.id, flowstats.triggered(trigger["type"]))
        self.new_runs.append(run)
        self.count(flow.id, flowstats.started())
        return run

    def end_top(self, status: str, reason: str | None = None) -> Run:
        frame = self.session.frames.pop()
        run: Run = frame["run"]
        run["status"] = status
        run["exited_on"] = self.now
        run["modified_on"] = self.now
        if reason:
            run["errors"].append(
                {"node": frame.get("node"), "code": status, "message": reason, "at": self.now}
            )
        self.ended_runs.append(run)
        self.count(run["flow"], flowstats.ended(status))
        return run

    def end_all(self, status: str, reason: str | None = None) -> None:
        self.clear_wait()
        while self.session.frames:
            self.end_top(status, reason)
        self.session_dirty = True
