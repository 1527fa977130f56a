"""Compile one flow version into one ``transitions.Machine``; fire it on unattached cursors.

States are node ids plus ``_start`` and ``_end``. Triggers: ``start`` (into the first node),
``advance`` (leave a node that finished its work), ``reply`` and ``timeout`` (leave a wait),
``fail`` (an earlier send failed: take its ``on_failure``) and ``expire``.

Why this shape (measured, see docs/engine.md): ``add_model`` costs 300–600 µs and 10–16 KiB per
model, so we never attach contacts; we fire ``machine.events[name].trigger(cursor)`` on a small
``__slots__`` object whose ``state`` is the persisted node id (~11 µs). The exit a node leaves by is
decided *before* firing (by the node's own code), so every condition is a plain comparison.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from transitions import Machine, MachineError, State

from bot.flow.nodes.base import FAILURE, TIMEOUT

if TYPE_CHECKING:
    from bot.flow.context import RunContext
    from bot.flow.files import Flow
    from bot.flow.nodes.base import Node

# transitions logs every callback at INFO: noise for operators, and a cost on the hot path.
logging.getLogger("transitions").setLevel(logging.WARNING)

START = "_start"
END = "_end"


class Cursor:
    """The model the machine moves: where a run is, and which exit it is about to take."""

    __slots__ = ("ctx", "exit", "failed_node", "state")

    def __init__(self, ctx: RunContext, state: str) -> None:
        self.ctx = ctx
        self.state = state
        self.exit: str | None = None
        self.failed_node: str | None = None


def _exit_is(name: str) -> Callable[[Any], bool]:
    return lambda event: bool(event.model.exit == name)


def _failed_at(node_id: str) -> Callable[[Any], bool]:
    return lambda event: bool(event.model.failed_node == node_id)


def _on_enter(node: Node) -> Callable[[Any], None]:
    def enter(event: Any) -> None:
        cursor: Cursor = event.model
        cursor.ctx.entered(node.id)
        cursor.exit = node.body.enter(node, cursor.ctx)

    return enter


def compile_flow(flow: Flow) -> Machine:
    """One machine per flow version, shared by every contact in it."""
    states = [State(START), State(END)]
    states += [State(node.id, on_enter=[_on_enter(node)]) for node in flow.nodes.values()]
    machine = Machine(
        model=None,
        states=states,
        initial=START,
        auto_transitions=False,
        send_event=True,
        queued=False,
    )
    machine.add_transition("start", START, flow.first)
    waits = [n for n in flow.nodes.values() if n.body.WAITS]
    for node in flow.nodes.values():
        for exit_name, target in node.exits().items():
            if node.body.WAITS:
                trigger = "timeout" if exit_name == TIMEOUT else "reply"
            else:
                trigger = "advance"
            machine.add_transition(
                trigger, node.id, target or END, conditions=[_exit_is(exit_name)]
            )
        if node.body.CAN_FAIL and node.on_failure:
            for wait in waits:
                machine.add_transition(
                    "fail", wait.id, node.on_failure, conditions=[_failed_at(node.id)]
                )
    for wait in waits:
        machine.add_transition("expire", wait.id, END)
    flow.machine = machine
    return machine


def fire(flow: Flow, cursor: Cursor, trigger: str) -> bool:
    """Fire ``trigger`` on ``cursor``; False when no transition fits (the exit is unknown)."""
    event = flow.machine.events.get(trigger)
    if event is None:
        return False
    source, exit_name = cursor.state, cursor.exit  # entering the next node sets its own exit
    try:
        moved = bool(event.trigger(cursor))
    except MachineError:
        return False
    if moved and source != START and trigger != "expire":
        if trigger == "fail" and cursor.failed_node:
            cursor.ctx.took(flow.id, cursor.failed_node, FAILURE)
        elif exit_name is not None:
            cursor.ctx.took(flow.id, source, exit_name)
    return moved


__all__ = ["END", "FAILURE", "START", "Cursor", "compile_flow", "fire"]
