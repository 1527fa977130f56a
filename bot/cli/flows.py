"""``chasqui flows reload`` and ``chasqui flows stats FLOW``: what Studio's Flows pages show,
in a terminal.

Like ``chasqui start``, they talk to the running server's admin API (``server.url`` and the admin
token of the same config): a reload must reach the process that runs the flows.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any
from urllib.parse import quote

from bot.cli.client import ApiFailed, call
from bot.core.config import Config


def reload(config: Config) -> int:
    report = call(config, "POST", "/api/v1/flows/reload")
    for label, key in (
        ("loaded", "loaded"),
        ("unchanged", "unchanged"),
        ("kept (the new file is invalid: the previous version runs on)", "kept"),
        ("removed", "removed"),
    ):
        if report[key]:
            print(f"{label}: {', '.join(report[key])}")
    for problem in report["problems"]:
        print(problem)
    for t in report["template_problems"]:
        print(f"{t['flow']}: {t['node']}: {t['channel']}: {t['code']}: {t['message']}")
    if report["problems"] or report["template_problems"]:
        count = len(report["problems"]) + len(report["template_problems"])
        print(f"\n{count} problem(s): chasqui check shows them too", file=sys.stderr)
        return 1
    return 0


def _exit_label(exit: dict[str, Any]) -> str:
    return f"  {exit.get('category') or exit['exit']} → {exit.get('to') or '(end)'}"


def stats(config: Config, flow: str) -> int:
    try:
        doc = call(config, "GET", f"/api/v1/flows/{quote(flow, safe='')}/stats")
    except ApiFailed as exc:
        if str(exc).startswith("unknown_flow"):
            loaded = sorted(f["id"] for f in call(config, "GET", "/api/v1/flows")["flows"])
            raise ApiFailed(
                f"no flow {flow!r} has run or is loaded; the flows: {', '.join(loaded) or 'none'}"
            ) from None
        raise
    version = doc.get("version")
    print(f"{doc['flow']}" + (f" (version {version})" if version else " (its file is gone)"))
    print("runs: " + ", ".join(f"{k} {v:,}" for k, v in doc["runs"].items()))
    exits = [e for n in doc["nodes"] for e in n["exits"]]
    width = max([30] + [len(_exit_label(e)) + 2 for e in exits])
    for node in doc["nodes"]:
        head = f"{node['id']} ({node.get('kind', 'removed')})"
        if "waiting" in node:
            head += f", {node['waiting']:,} waiting"
        print(head)
        for exit in node["exits"]:
            print(_exit_label(exit).ljust(width) + f"{exit['count']:>9,}")
    if doc["results"]:
        print("results (each run's latest value):")
        for name, categories in doc["results"].items():
            counted = ", ".join(f"{c} {n:,}" for c, n in categories.items())
            print(f"  {name}: {counted}")
    return 0


def cmd_flows(config: Config, args: argparse.Namespace) -> int:
    try:
        if args.action == "reload":
            return reload(config)
        if not args.flow:
            print("error: name the flow: chasqui flows stats FLOW", file=sys.stderr)
            return 2
        return stats(config, args.flow)
    except ApiFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """``chasqui flows``; the caller sets what runs it."""
    p: argparse.ArgumentParser = sub.add_parser(
        "flows", help="reload the running server's flows, or show a flow's stats"
    )
    p.add_argument("action", choices=["reload", "stats"])
    p.add_argument("flow", nargs="?", help="stats: the flow's id")
    return p
