"""The names of a flow's counters: fields of one Redis hash per flow, written by the commit.

Defined here, below both, because the engine counts with them (bot/engine/sprint.py), the
store takes one back when it deletes a waiting contact, and the stats page reads them
(bot/engine/stats.py). Node ids and result names cannot hold ``:``; a category, last, may:

- ``run:started``, ``run:<completed|expired|interrupted|failed>`` -- totals since the first run;
- ``wait:<node>`` -- contacts waiting at that node now (+1 on a wait, -1 when it ends);
- ``exit:<node>:<exit>`` -- times a run left the node by that exit;
- ``result:<name>:<category>`` -- runs whose latest value of that result has that category;
- ``trigger:<keyword|catch_all|new_contact>`` -- runs a contact's message started, by trigger.
"""

from __future__ import annotations


def started() -> str:
    return "run:started"


def ended(status: str) -> str:
    return f"run:{status}"


def waiting(node: str) -> str:
    return f"wait:{node}"


def exit_taken(node: str, exit_name: str) -> str:
    return f"exit:{node}:{exit_name}"


def result(name: str, category: str) -> str:
    return f"result:{name}:{category}"


def triggered(trigger_type: str) -> str:
    return f"trigger:{trigger_type}"
