"""A flow's counters: how ``GET /api/v1/flows/<id>/stats`` shows them.

The counters live in one Redis hash per flow (``store.flow_stats_key``) and move only inside the
commit that changes the runs they count, so they agree with the runs, never ahead or behind.
Their field names are built in bot/core/counters.py (the engine counts with them).
"""

from __future__ import annotations

from typing import Any

from bot.core.counters import ended, started
from bot.core.runstatus import ENDED
from bot.flow.files import Flow
from bot.flow.nodes.base import Node
from bot.flow.triggers import TRIGGER_TYPES


def exit_category(node: Node, exit_name: str) -> str | None:
    """The category a routing node's exit stands for (its case's, ``other``'s, the timeout's)."""
    body = node.body
    if exit_name.startswith("case"):
        cases = getattr(body, "cases", None) or []
        index = int(exit_name[4:]) if exit_name[4:].isdigit() else -1
        return str(cases[index].category) if 0 <= index < len(cases) else None
    named = {"other": getattr(body, "other", None), "timeout": getattr(body, "on_timeout", None)}
    exit_body = named.get(exit_name)
    return str(exit_body.category) if exit_body is not None else None


def present(
    flow_id: str, flow: Flow | None, counters: dict[str, int], open_runs: int
) -> dict[str, Any]:
    """The stats document: run totals, then each node of the current version (in file order)
    with the contacts waiting there and the count through each of its exits, then results by
    category, then the runs each kind of trigger started (of ``runs.started``). Counters of nodes
    the current version no longer has follow, marked ``removed``."""
    runs: dict[str, int] = {"started": counters.get(started(), 0), "active": open_runs}
    runs.update({status: counters.get(ended(status), 0) for status in ENDED})
    waits: dict[str, int] = {}
    exits: dict[str, dict[str, int]] = {}
    results: dict[str, dict[str, int]] = {}
    triggers: dict[str, int] = dict.fromkeys(TRIGGER_TYPES, 0)
    for name, value in counters.items():
        kind, _, rest = name.partition(":")
        if kind == "trigger":
            triggers[rest] = value
        elif kind == "wait":
            waits[rest] = value
        elif kind == "exit":
            node_id, _, exit_name = rest.partition(":")
            exits.setdefault(node_id, {})[exit_name] = value
        elif kind == "result":
            result_name, _, category = rest.partition(":")
            if value:
                results.setdefault(result_name, {})[category] = value
    nodes: list[dict[str, Any]] = []
    known = flow.nodes if flow is not None else {}
    for node in known.values():
        entry: dict[str, Any] = {"id": node.id, "kind": node.kind}
        if node.body.WAITS:
            entry["waiting"] = max(waits.get(node.id, 0), 0)
        counted = exits.get(node.id, {})
        entry["exits"] = [
            {
                "exit": exit_name,
                **({"category": c} if (c := exit_category(node, exit_name)) else {}),
                "to": target,
                "count": counted.get(exit_name, 0),
            }
            for exit_name, target in node.exits().items()
        ]
        nodes.append(entry)
    for node_id in sorted((set(waits) | set(exits)) - set(known)):
        entry = {"id": node_id, "removed": True}
        if waits.get(node_id):
            entry["waiting"] = max(waits[node_id], 0)
        entry["exits"] = [
            {"exit": e, "count": n} for e, n in sorted(exits.get(node_id, {}).items())
        ]
        nodes.append(entry)
    return {
        "flow": flow_id,
        "version": flow.version if flow is not None else None,
        "runs": {**runs, "waiting": sum(max(v, 0) for v in waits.values())},
        "nodes": nodes,
        "results": results,
        "triggers": triggers,
    }
