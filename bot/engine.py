"""Apply events to one contact: start, reply, timeout, expire, interrupt, webhook, fail.

The engine only *decides*. A :class:`Sprint` holds one contact's state loaded from Redis (contact,
session with its active runs) and collects what the events did: changed records, ended runs,
messages to send, timers to set or drop, a webhook to call. The worker commits all of that in one
Redis transaction and only then sends — so a crash between deciding and committing just re-runs
the decision, and nothing here may do I/O.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bot.expressions import compile_text
from bot.flowfile import Flow
from bot.machine import END, START, Cursor, fire
from bot.nodes.base import FAILURE, NEXT
from bot.optout import OptOut

ACTIVE, WAITING = "active", "waiting"
COMPLETED, EXPIRED, INTERRUPTED, FAILED = "completed", "expired", "interrupted", "failed"
MAX_PATH = 500  # path entries kept per run; a longer run records that it was truncated
# what a channel may tell about an inbound message, kept on its record in the history
INBOUND_DETAILS = (
    "external_id",
    "msg_type",
    "payload",
    "media",
    "location",
    "reply_to",
    "sent_at",
    "contacts",
    "reaction",
)


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


class LoopDetected(Exception):
    pass


def _for_channel(content: dict[str, Any], route: Route) -> dict[str, Any]:
    """What this channel will really send: the template alone where templates are used (it
    carries its own buttons and header), the text and the rest elsewhere. Recording only that
    keeps the history true to what the contact saw, and the record small."""
    if route.templates and content.get("template"):
        return {"template": content["template"]}
    if "template" in content and (content.get("text") or content.get("attachment")):
        return {k: v for k, v in content.items() if k != "template"}
    return content  # a template alone stays: the channel shows or refuses it


@dataclass
class Sprint:
    """One contact's batch of events: state in, effects out. Node kinds call its methods."""

    engine: Engine
    contact: dict[str, Any]
    session: Session
    now: float
    # effects, committed together by the worker
    contact_dirty: bool = False
    session_dirty: bool = False
    ended_runs: list[dict[str, Any]] = field(default_factory=list)
    new_runs: list[str] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    timers_add: dict[str, float] = field(default_factory=dict)
    timers_remove: list[str] = field(default_factory=list)
    group_changes: dict[str, bool] = field(default_factory=dict)  # name -> added (or removed)
    webhook_request: dict[str, Any] | None = None
    # scratch for the event being applied
    input_text: str = ""
    input_alternates: list[str] = field(default_factory=list)  # button payload, reply id
    input_external_id: str | None = None  # the provider's id of the message being answered
    _subflow: str | None = None
    _steps: int = 0
    _context: dict[str, Any] | None = None

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
        return {
            "contact": {
                "uuid": c.get("uuid", ""),
                "name": name,
                "first_name": name.split()[0] if name.split() else "",
                "language": c.get("language") or "",
                "urn": (c.get("urns") or [""])[0],
                "channel": c.get("channel") or "",
            },
            "fields": c.get("fields") or {},
            "results": run.get("results", {}),
            "input": {"text": self.input_text},
            "trigger": {"params": run.get("params", {})},
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
        self.run["results"][name] = result

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
        self._clear_wait()
        token = uuid.uuid4().hex[:10]
        expire = self.flow.expire_after
        kind, due = ("timeout", timeout) if timeout and timeout < expire else ("expire", expire)
        self.session.wait = {
            "token": token,
            "node": self.frame["node"],
            "run": self.run["uuid"],
            "timer": kind,
        }
        self.timers_add[f"{self.contact['uuid']}|{kind}|{token}"] = self.now + due
        self.run["status"] = WAITING

    def rearm_expiry(self) -> None:
        """The wait's timer fired as a timeout the flow no longer has: the same wait now ends
        only by a reply or the run's expiry, so that becomes its timer."""
        wait = self.session.wait
        assert wait is not None
        member = f"{self.contact['uuid']}|expire|{wait['token']}"
        self.timers_add[member] = self.now + self.flow.expire_after
        wait["timer"] = "expire"
        self.session_dirty = True

    def send(self, node: Any, content: dict[str, Any]) -> str | None:
        """Queue a message for the contact; returns an error code when it cannot go at all."""
        route = self.engine.route_for(self.contact)
        if route is not None:
            content = _for_channel(content, route[0])
        message: dict[str, Any] = {
            "uuid": str(uuid.uuid4()),
            "direction": "out",
            "contact": self.contact["uuid"],
            "channel": route[0].name if route else None,
            "urn": route[1] if route else None,
            **content,
            "run": self.run["uuid"],
            "flow": self.frame["flow"],
            "node": node.id,
            "status": "queued",
            "created_on": self.now,
        }
        error = None
        if self.contact.get("status", "active") != "active":
            error = f"contact_{self.contact['status']}"
        elif route is None:
            error = "no_route"
        elif not self._window_allows(route[0], content):
            error = "outside_24h_window"
        if error:
            message["status"] = "failed"
            message["error"] = {"code": error}
            self.run["errors"].append({"node": node.id, "code": error, "at": self.now})
        else:
            self._guard_loop(content)
        self.messages.append(message)
        return error

    def notice(self, text: str, kind: str) -> str | None:
        """A message outside any run (an opt-out confirmation); sent whatever the contact's
        status. Returns an error code when it cannot go."""
        route = self.engine.route_for(self.contact)
        content = {"text": text}
        message: dict[str, Any] = {
            "uuid": str(uuid.uuid4()),
            "direction": "out",
            "contact": self.contact["uuid"],
            "channel": route[0].name if route else None,
            "urn": route[1] if route else None,
            "text": text,
            "kind": kind,
            "run": None,
            "status": "queued",
            "created_on": self.now,
        }
        error = None
        if route is None:
            error = "no_route"
        elif not self._window_allows(route[0], content):
            error = "outside_24h_window"
        if error:
            message["status"] = "failed"
            message["error"] = {"code": error}
        self.messages.append(message)
        return error

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
    def _clear_wait(self) -> None:
        wait = self.session.wait
        if wait:
            member = f"{self.contact['uuid']}|{wait.get('timer', 'expire')}|{wait['token']}"
            if self.timers_add.pop(member, None) is None:
                self.timers_remove.append(member)
            self.session.wait = None

    def _new_run(self, flow: Flow, params: dict[str, Any], parent: str | None) -> dict[str, Any]:
        run: dict[str, Any] = {
            "uuid": str(uuid.uuid4()),
            "flow": flow.id,
            "version": flow.version,
            "status": ACTIVE,
            "created_on": self.now,
            "modified_on": self.now,
            "path": [],
            "results": {},
            "errors": [],
            "params": params,
        }
        if parent:
            run["parent"] = parent
        self.new_runs.append(run["uuid"])
        return run

    def _end_top(self, status: str, reason: str | None = None) -> dict[str, Any]:
        frame = self.session.frames.pop()
        run: dict[str, Any] = frame["run"]
        run["status"] = status
        run["exited_on"] = self.now
        run["modified_on"] = self.now
        if reason:
            run["errors"].append(
                {"node": frame.get("node"), "code": status, "message": reason, "at": self.now}
            )
        self.ended_runs.append(run)
        return run

    def end_all(self, status: str, reason: str | None = None) -> None:
        self._clear_wait()
        while self.session.frames:
            self._end_top(status, reason)
        self.session_dirty = True


class Engine:
    """The compiled flows plus the limits and routes every sprint runs under."""

    def __init__(
        self, flows: dict[str, Flow], routes: list[Route], limits: Limits | None = None
    ) -> None:
        self.flows = flows
        self.routes = routes
        self.limits = limits or Limits()

    def route_for(self, contact: dict[str, Any]) -> tuple[Route, str] | None:
        """The contact's chosen channel, else its last used one, else the first that reaches it."""
        urns: list[str] = contact.get("urns") or []
        preferred = [contact.get("channel"), contact.get("last_channel")]
        candidates = [r for p in preferred for r in self.routes if p and r.name == p]
        candidates += self.routes
        for route in candidates:
            for urn in urns:
                if urn.split(":", 1)[0] in route.schemes:
                    return route, urn
        return None

    def sprint(self, contact: dict[str, Any], session: Session, now: float) -> Sprint:
        sprint = Sprint(self, contact, session, round(now, 3))
        self._migrate(sprint)
        return sprint

    def _migrate(self, sprint: Sprint) -> None:
        """Resume runs on the current version of their flow; end those whose node is gone."""
        for frame in sprint.session.frames:
            flow = self.flows.get(frame["flow"])
            if flow is None:
                sprint.end_all(INTERRUPTED, f"flow {frame['flow']!r} no longer exists")
                return
            node = frame["node"]
            if node not in flow.nodes and node not in (START, END):
                sprint.end_all(
                    INTERRUPTED,
                    f"node {node!r} no longer exists in {flow.id} version {flow.version}",
                )
                return
            wait = sprint.session.wait
            waits_here = wait is not None and wait["run"] == frame["run"]["uuid"]
            if waits_here and node in flow.nodes and not flow.nodes[node].body.WAITS:
                # same id, other kind: a reply routed to it would have no on_reply to call
                sprint.end_all(
                    INTERRUPTED,
                    f"node {node!r} is no longer a wait in {flow.id} version {flow.version}",
                )
                return
            if frame["run"]["version"] != flow.version:
                frame["run"]["version"] = flow.version

    # -- events ----------------------------------------------------------------------------
    def apply(self, sprint: Sprint, event: dict[str, Any]) -> None:
        """Apply one event. Afterwards ``sprint.webhook_request`` may ask for an HTTP call."""
        # times are kept to the millisecond: enough for ordering, and shorter in Redis
        sprint.now = round(max(sprint.now, float(event.get("at", sprint.now))), 3)
        sprint._steps = 0
        sprint._context = None
        sprint.input_text = ""
        sprint.input_alternates = []
        sprint.input_external_id = None
        handler = getattr(self, f"_on_{event.get('type')}", None)
        try:
            if handler is not None:
                handler(sprint, event)
        except LoopDetected as exc:
            sprint.end_all(FAILED, str(exc))
        for frame in sprint.session.frames:
            frame["run"]["modified_on"] = sprint.now
        since = sprint.now - self.limits.loop_window
        if sprint.session.recent and sprint.session.recent[0][1] < since:
            sprint.session.recent = [r for r in sprint.session.recent if r[1] >= since]
        sprint.session_dirty = True

    def _on_start(self, sprint: Sprint, event: dict[str, Any]) -> None:
        flow = self.flows.get(event["flow"])
        if flow is None:
            return
        if sprint.session.frames:
            sprint.end_all(INTERRUPTED, f"started in {flow.id}")
        self._push(sprint, flow, event.get("params") or {}, None)

    def _on_interrupt(self, sprint: Sprint, event: dict[str, Any]) -> None:
        if sprint.session.frames:
            sprint.end_all(INTERRUPTED, event.get("reason") or "interrupted")

    def _on_reply(self, sprint: Sprint, event: dict[str, Any]) -> None:
        text = str(event.get("text") or "")
        sprint.input_text = text
        sprint.input_alternates = [str(event["payload"])] if event.get("payload") else []
        sprint.input_external_id = event.get("external_id")
        sent_at = float(event.get("sent_at") or event.get("at") or sprint.now)
        contact = sprint.contact
        contact["last_seen_on"] = sprint.now
        channel = event.get("channel")
        if channel:
            contact["last_channel"] = channel
            inbound = contact.setdefault("last_inbound", {})
            inbound[channel] = max(float(inbound.get(channel, 0)), sent_at)
        sprint.contact_dirty = True
        stale = sent_at < sprint.now - self.limits.max_reply_age
        # record_only: a reaction, a read receipt-like or unsupported message: kept, not answered
        answering = self._at_wait(sprint) and not stale and not event.get("record_only")
        message = {
            "uuid": event.get("uuid") or str(uuid.uuid4()),
            "direction": "in",
            "contact": contact["uuid"],
            "channel": channel,
            "urn": event.get("urn"),
            "text": text,
            "run": sprint.session.wait["run"] if answering and sprint.session.wait else None,
            "status": "handled" if answering else "stale" if stale else "received",
            "created_on": sprint.now,
        }
        message.update({k: event[k] for k in INBOUND_DETAILS if event.get(k) is not None})
        sprint.messages.append(message)
        if not event.get("record_only") and self._opt_out(sprint, text, message):
            return
        if not answering:
            return
        node = sprint.flow.nodes[sprint.frame["node"]]
        sprint._clear_wait()
        sprint.run["status"] = ACTIVE
        cursor = Cursor(sprint, node.id)
        cursor.exit = node.body.on_reply(node, sprint, text)
        self._fire(sprint, cursor, "reply")

    def _opt_out(self, sprint: Sprint, text: str, message: dict[str, Any]) -> bool:
        """A stop word opts the contact out (its waiting run is interrupted) and a start word
        back in, each confirmed once; True when the message was one (it answers no wait)."""
        found = self.limits.opt_out.match(text)
        contact = sprint.contact
        status = contact.get("status", "active")
        if found is None or status == "blocked":
            return False
        action, language = found
        if action == "start" and status != "opted_out":
            return False  # an active contact's START is an ordinary answer
        message["run"] = None
        message["status"] = "handled"
        message["action"] = "opt_out" if action == "stop" else "opt_in"
        if action == "stop" and status == "opted_out":
            return True  # confirmed once already
        rules = self.limits.opt_out
        texts = rules.stop_confirmation if action == "stop" else rules.start_confirmation
        if action == "stop":
            sprint.end_all(INTERRUPTED, "opted out")
        contact["status"] = "opted_out" if action == "stop" else "active"
        contact["status_changed_on"] = sprint.now
        sprint.contact_changed()
        text_out = texts.get(contact.get("language") or "") or texts.get(language)
        if text_out:
            sprint.notice(text_out, message["action"])
        return True

    def _on_timeout(self, sprint: Sprint, event: dict[str, Any]) -> None:
        if not self._at_wait(sprint, event.get("token")):
            return  # stale: the contact moved on since the timer was set
        node = sprint.flow.nodes[sprint.frame["node"]]
        if getattr(node.body, "on_timeout", None) is None:
            # the new version of the flow has no timeout here: keep waiting, until the expiry
            sprint.rearm_expiry()
            return
        sprint._clear_wait()
        sprint.run["status"] = ACTIVE
        cursor = Cursor(sprint, node.id)
        cursor.exit = node.body.on_timeout_fired(node, sprint)
        self._fire(sprint, cursor, "timeout")

    def _on_expire(self, sprint: Sprint, event: dict[str, Any]) -> None:
        if not self._at_wait(sprint, event.get("token")):
            return
        fire(sprint.flow, Cursor(sprint, sprint.frame["node"]), "expire")
        sprint.end_all(EXPIRED)

    def _on_webhook(self, sprint: Sprint, event: dict[str, Any]) -> None:
        if not sprint.session.frames:
            return
        node = sprint.flow.nodes.get(sprint.frame["node"])
        if node is None or node.kind != "call_webhook":
            return
        response = event.get("response") or {}
        sprint.run["webhook"] = response.get("json")
        cursor = Cursor(sprint, node.id)
        cursor.exit = node.body.on_response(node, sprint, response)
        self._fire(sprint, cursor, "advance")

    def _on_fail(self, sprint: Sprint, event: dict[str, Any]) -> None:
        """A message sent earlier failed for good: note it, and take its ``on_failure``."""
        if event.get("code") == "outside_24h_window" and event.get("channel"):
            # the provider says the window is closed (it can close early): believe it, so
            # the next free text fails here instead of at the provider
            (sprint.contact.get("last_inbound") or {}).pop(event["channel"], None)
            sprint.contact_dirty = True
        for frame in sprint.session.frames:
            if frame["run"]["uuid"] == event.get("run"):
                frame["run"]["errors"].append(
                    {"node": event.get("node"), "code": event.get("code"), "at": sprint.now}
                )
        if not self._at_wait(sprint) or sprint.run["uuid"] != event.get("run"):
            return
        node = sprint.flow.nodes.get(str(event.get("node")))
        if node is None or not node.on_failure:
            return
        sprint._clear_wait()
        sprint.run["status"] = ACTIVE
        cursor = Cursor(sprint, sprint.frame["node"])
        cursor.failed_node = node.id
        self._fire(sprint, cursor, "fail")

    # -- moving through the graph ------------------------------------------------------------
    def _at_wait(self, sprint: Sprint, token: str | None = None) -> bool:
        wait = sprint.session.wait
        if not wait or not sprint.session.frames:
            return False
        if token is not None and wait["token"] != token:
            return False
        return bool(wait["node"] == sprint.frame["node"] and wait["run"] == sprint.run["uuid"])

    def _push(self, sprint: Sprint, flow: Flow, params: dict[str, Any], parent: str | None) -> None:
        run = sprint._new_run(flow, params, parent)
        sprint.session.frames.append({"flow": flow.id, "node": START, "run": run})
        cursor = Cursor(sprint, START)
        fire(flow, cursor, "start")
        self._settle(sprint, cursor)

    def _fire(self, sprint: Sprint, cursor: Cursor, trigger: str) -> None:
        if not fire(sprint.flow, cursor, trigger):
            sprint.end_all(FAILED, f"no exit {cursor.exit!r} from {cursor.state!r}")
            return
        self._settle(sprint, cursor)

    def _settle(self, sprint: Sprint, cursor: Cursor) -> None:
        """After a transition: keep moving until the run waits, ends or needs I/O."""
        while sprint.session.frames:
            if cursor.state == END:
                run = sprint._end_top(COMPLETED)
                if not sprint.session.frames:
                    return
                parent = Cursor(sprint, sprint.frame["node"])
                parent.exit = NEXT if run["status"] == COMPLETED else FAILURE
                if not fire(sprint.flow, parent, "advance"):
                    sprint.end_all(FAILED, f"no exit from {parent.state!r}")
                    return
                cursor = parent
                continue
            if cursor.exit is not None:
                if not fire(sprint.flow, cursor, "advance"):
                    sprint.end_all(FAILED, f"no exit {cursor.exit!r} from {cursor.state!r}")
                    return
                continue
            if sprint._subflow is not None:
                child, sprint._subflow = self.flows.get(sprint._subflow), None
                if child is None:
                    cursor.exit = FAILURE
                    continue
                self._push(sprint, child, sprint.run.get("params", {}), sprint.run["uuid"])
                return
            return  # waiting, or a webhook to call
