"""Apply events to one contact: start, reply, timeout, expire, interrupt, webhook, fail.

Events arrive typed (:mod:`bot.engine.events`); :meth:`Engine.apply` dispatches on their class
with one ``match``, each case calling the handler of that type.

The engine only *decides*: it moves a :class:`~bot.engine.sprint.Sprint` (one contact's state loaded
from Redis) through the compiled flows and lets it collect the effects. The worker commits all
of that in one Redis transaction and only then sends -- so a crash between deciding and
committing just re-runs the decision, and nothing here may do I/O.
"""

from __future__ import annotations

import uuid
from typing import Any, assert_never, cast

from bot.core.records import Message, Run
from bot.core.runstatus import RunStatus
from bot.engine.events import (
    Event,
    Expire,
    Interrupt,
    Reply,
    SendFailed,
    Start,
    Timeout,
    Unknown,
    WebhookAnswered,
)
from bot.engine.sprint import (
    Limits,
    LoopDetected,
    Route,
    Session,
    Sprint,
    chosen_option,
)
from bot.engine.triggers import Hit, TriggerIndex, day_start, decide
from bot.flow.files import Flow
from bot.flow.machine import END, START, Cursor, fire
from bot.flow.nodes.base import FAILURE, NEXT
from bot.flow.nodes.routing import case_takes


class Engine:
    """The compiled flows plus the limits and routes every sprint runs under."""

    def __init__(
        self,
        flows: dict[str, Flow],
        routes: list[Route],
        limits: Limits | None = None,
        triggers: TriggerIndex | None = None,
    ) -> None:
        self.flows = flows
        self.routes = routes
        self.limits = limits or Limits()
        # built once per load of the flows (FlowRegistry), from flows whose claims do not clash
        self.triggers = triggers if triggers is not None else TriggerIndex(flows.values())

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
                sprint.end_all(RunStatus.INTERRUPTED, f"flow {frame['flow']!r} no longer exists")
                return
            node = frame["node"]
            if node not in flow.nodes and node not in (START, END):
                sprint.end_all(
                    RunStatus.INTERRUPTED,
                    f"node {node!r} no longer exists in {flow.id} version {flow.version}",
                )
                return
            wait = sprint.session.wait
            waits_here = wait is not None and wait["run"] == frame["run"]["uuid"]
            if waits_here and node in flow.nodes and not flow.nodes[node].body.WAITS:
                # same id, other kind: a reply routed to it would have no on_reply to call
                sprint.end_all(
                    RunStatus.INTERRUPTED,
                    f"node {node!r} is no longer a wait in {flow.id} version {flow.version}",
                )
                return
            if frame["run"]["version"] != flow.version:
                frame["run"]["version"] = flow.version

    # -- events ----------------------------------------------------------------------------
    def apply(self, sprint: Sprint, event: Event) -> None:
        """Apply one event. Afterwards ``sprint.webhook_request`` may ask for an HTTP call."""
        sprint.begin(event.at)
        try:
            match event:
                case Reply():
                    self._on_reply(sprint, event)
                case Start():
                    self._on_start(sprint, event)
                case Timeout():
                    self._on_timeout(sprint, event)
                case Expire():
                    self._on_expire(sprint, event)
                case WebhookAnswered():
                    self._on_webhook(sprint, event)
                case SendFailed():
                    self._on_fail(sprint, event)
                case Interrupt():
                    self._on_interrupt(sprint, event)
                case Unknown():
                    pass  # a type this version does not handle: only its time counts
                case _:
                    assert_never(event)
        except LoopDetected as exc:
            sprint.end_all(RunStatus.FAILED, str(exc))
        for frame in sprint.session.frames:
            frame["run"]["modified_on"] = sprint.now
        since = sprint.now - self.limits.loop_window
        if sprint.session.recent and sprint.session.recent[0][1] < since:
            sprint.session.recent = [r for r in sprint.session.recent if r[1] >= since]
        sprint.session_dirty = True

    def _on_start(self, sprint: Sprint, event: Start) -> None:
        flow = self.flows.get(event.flow)
        if flow is None:
            return
        if sprint.session.frames:
            sprint.end_all(RunStatus.INTERRUPTED, f"started in {flow.id}")
        self._push(sprint, flow, event.params, None, start=event.start)

    def _on_interrupt(self, sprint: Sprint, event: Interrupt) -> None:
        if sprint.session.frames:
            sprint.end_all(RunStatus.INTERRUPTED, event.reason or "interrupted")

    def _on_reply(self, sprint: Sprint, event: Reply) -> None:
        text = event.text
        alternates = [str(event.payload)] if event.payload else []
        # "2" after numbered options (a channel without buttons) answers as the second option
        # would have, as if tapped; what the contact wrote stays in the history
        wait = sprint.session.wait
        chosen = chosen_option(text, wait.get("options") if wait else None)
        answer = text if chosen is None else chosen
        if chosen is not None:
            alternates.append(text)
        sprint.set_input(answer, alternates, event.external_id)
        sent_at = float(event.sent_at or event.at or sprint.now)
        contact = sprint.contact
        contact["last_seen_on"] = sprint.now
        channel = event.channel
        if channel:
            contact["last_channel"] = channel
            inbound = contact.setdefault("last_inbound", {})
            inbound[channel] = max(float(inbound.get(channel, 0)), sent_at)
        sprint.contact_dirty = True
        stale = sent_at < sprint.now - self.limits.max_reply_age
        # record_only: a reaction, a read receipt-like or unsupported message: kept, not answered
        answering = self._at_wait(sprint) and not stale and not event.record_only
        message: Message = {
            "uuid": event.uuid or str(uuid.uuid4()),
            "direction": "in",
            "contact": contact["uuid"],
            "channel": channel,
            "urn": event.urn,
            "text": text,
            "run": sprint.session.wait["run"] if answering and sprint.session.wait else None,
            "status": "handled" if answering else "stale" if stale else "received",
            "created_on": sprint.now,
        }
        message.update(cast(Message, event.details()))  # only the keys a channel may tell
        sprint.messages.append(message)
        # only a stop/start word needs the cases asked twice (here, and to route it)
        opt = self.limits.opt_out.match(text) is not None
        takes = opt and answering and self._case_takes(sprint, answer)
        if not event.record_only and not takes and self._opt_out(sprint, text, message):
            return
        if not (event.record_only or stale) and contact.get("status", "active") == "active":
            hit = decide(
                self.triggers,
                text,
                channel,
                new_contact=event.new_contact,
                waiting=answering,
                in_flow=bool(sprint.session.frames),
                wait_takes=lambda: self._case_takes(sprint, text),
            )
            if hit is not None and hit.flow in self.flows:
                self._start_triggered(sprint, hit, event, message)
                return
        if not answering:
            return
        node = sprint.flow.nodes[sprint.frame["node"]]
        sprint.clear_wait()
        sprint.run["status"] = RunStatus.ACTIVE
        cursor = Cursor(sprint, node.id)
        cursor.exit = node.body.on_reply(node, sprint, answer)
        self._fire(sprint, cursor, "reply")

    def _start_triggered(self, sprint: Sprint, hit: Hit, event: Reply, message: Message) -> None:
        """Start the flow a trigger names for the message (which it answers); a run the
        contact is in ends interrupted first, as a start does."""
        flow = self.flows[hit.flow]
        if sprint.session.frames:
            sprint.end_all(RunStatus.INTERRUPTED, f"{hit.type} trigger of {flow.id}")
        trigger = hit.describe(event.text, event.channel)
        # the day's trigger record in the starts history counts the run and its messages
        run = self._push(sprint, flow, {}, None, day_start(flow.id, sprint.now), trigger)
        message["run"] = run["uuid"]
        message["status"] = "handled"

    def _case_takes(self, sprint: Sprint, text: str) -> bool:
        """A case of the waiting node matches the answer: it goes there, stop word or not."""
        cases = getattr(sprint.flow.nodes[sprint.frame["node"]].body, "cases", None) or []
        return case_takes(cases, [text, *sprint.input_alternates])

    def _opt_out(self, sprint: Sprint, text: str, message: Message) -> bool:
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
            sprint.end_all(RunStatus.INTERRUPTED, "opted out")
        contact["status"] = "opted_out" if action == "stop" else "active"
        contact["status_changed_on"] = sprint.now
        sprint.contact_changed()
        text_out = texts.get(contact.get("language") or "") or texts.get(language)
        if text_out:
            sprint.notice(text_out, message["action"])
        return True

    def _on_timeout(self, sprint: Sprint, event: Timeout) -> None:
        if not self._at_wait(sprint, event.token):
            return  # stale: the contact moved on since the timer was set
        node = sprint.flow.nodes[sprint.frame["node"]]
        if getattr(node.body, "on_timeout", None) is None:
            # the new version of the flow has no timeout here: keep waiting, until the expiry
            sprint.rearm_expiry()
            return
        sprint.clear_wait()
        sprint.run["status"] = RunStatus.ACTIVE
        cursor = Cursor(sprint, node.id)
        cursor.exit = node.body.on_timeout_fired(node, sprint)
        self._fire(sprint, cursor, "timeout")

    def _on_expire(self, sprint: Sprint, event: Expire) -> None:
        if not self._at_wait(sprint, event.token):
            return
        fire(sprint.flow, Cursor(sprint, sprint.frame["node"]), "expire")
        sprint.end_all(RunStatus.EXPIRED)

    def _on_webhook(self, sprint: Sprint, event: WebhookAnswered) -> None:
        if not sprint.session.frames:
            return
        node = sprint.flow.nodes.get(sprint.frame["node"])
        if node is None or node.kind != "call_webhook":
            return
        response = event.response
        sprint.run["webhook"] = response.get("json")
        cursor = Cursor(sprint, node.id)
        cursor.exit = node.body.on_response(node, sprint, response)
        self._fire(sprint, cursor, "advance")

    def _on_fail(self, sprint: Sprint, event: SendFailed) -> None:
        """A message sent earlier failed for good: note it, and take its ``on_failure``."""
        if event.code == "outside_24h_window" and event.channel:
            # the provider says the window is closed (it can close early): believe it, so
            # the next free text fails here instead of at the provider
            (sprint.contact.get("last_inbound") or {}).pop(event.channel, None)
            sprint.contact_dirty = True
        for frame in sprint.session.frames:
            if frame["run"]["uuid"] == event.run:
                frame["run"]["errors"].append(
                    {"node": event.node, "code": event.code, "at": sprint.now}
                )
        if not self._at_wait(sprint) or sprint.run["uuid"] != event.run:
            return
        node = sprint.flow.nodes.get(str(event.node))
        if node is None or not (node.on_failure or node.kind == "send_message"):
            return
        sprint.clear_wait()
        sprint.run["status"] = RunStatus.ACTIVE
        if not node.on_failure:  # the contact never got the question: the run fails
            cursor = Cursor(sprint, node.id)
            cursor.exit = FAILURE
            self._settle(sprint, cursor)
            return
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

    def _push(
        self,
        sprint: Sprint,
        flow: Flow,
        params: dict[str, Any],
        parent: str | None,
        start: str | None = None,
        trigger: dict[str, Any] | None = None,
    ) -> Run:
        run = sprint.new_run(flow, params, parent, trigger)
        if start:
            run["start"] = start  # the start (bot/work/starts.py) that began this run
        sprint.session.frames.append({"flow": flow.id, "node": START, "run": run})
        cursor = Cursor(sprint, START)
        fire(flow, cursor, "start")
        self._settle(sprint, cursor)
        return run

    def _fire(self, sprint: Sprint, cursor: Cursor, trigger: str) -> None:
        if not fire(sprint.flow, cursor, trigger):
            sprint.end_all(RunStatus.FAILED, f"no exit {cursor.exit!r} from {cursor.state!r}")
            return
        self._settle(sprint, cursor)

    def _settle(self, sprint: Sprint, cursor: Cursor) -> None:
        """After a transition: keep moving until the run waits, ends or needs I/O."""
        while sprint.session.frames:
            reason = _unsent(sprint, cursor)
            if reason:  # a message with no on_failure did not go out: the run ends failed
                sprint.took(sprint.flow.id, cursor.state, FAILURE)
                sprint.frame["node"] = cursor.state
            if cursor.state == END or reason:
                status = RunStatus.FAILED if reason else RunStatus.COMPLETED
                run = sprint.end_top(status, reason)
                if not sprint.session.frames:
                    return
                parent = Cursor(sprint, sprint.frame["node"])
                parent.exit = NEXT if run["status"] == RunStatus.COMPLETED else FAILURE
                if not fire(sprint.flow, parent, "advance"):
                    sprint.end_all(RunStatus.FAILED, f"no exit from {parent.state!r}")
                    return
                cursor = parent
                continue
            if cursor.exit is not None:
                if not fire(sprint.flow, cursor, "advance"):
                    sprint.end_all(
                        RunStatus.FAILED, f"no exit {cursor.exit!r} from {cursor.state!r}"
                    )
                    return
                continue
            subflow = sprint.take_subflow()
            if subflow is not None:
                child = self.flows.get(subflow)
                if child is None:
                    cursor.exit = FAILURE
                    continue
                outer = sprint.run
                self._push(
                    sprint, child, outer.get("params", {}), outer["uuid"], outer.get("trigger")
                )
                return
            return  # waiting, or a webhook to call


def _unsent(sprint: Sprint, cursor: Cursor) -> str | None:
    """Why the run must fail: its message at ``cursor`` failed and the node has no
    ``on_failure`` (a run must not wait for an answer to a question never delivered)."""
    node = sprint.flow.nodes.get(cursor.state) if cursor.exit == FAILURE else None
    if node is None or node.kind != "send_message" or node.on_failure:
        return None
    errors = sprint.run["errors"]
    code = next((e["code"] for e in reversed(errors) if e.get("node") == node.id), "failed")
    return f"message at {node.id!r} not sent: {code}"
