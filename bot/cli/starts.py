"""``chasqui start`` and ``chasqui starts``: send a flow and follow it from a terminal.

They talk to the running server's admin API (``server.url`` and the admin token of the same
config), so they work from any machine that has the config, and the server does the work.
``start --preview`` says what a start would do and starts nothing; ``starts cancel|retry``
are the buttons of Studio's start page. An error says what to do about it in CLI terms: the
flags that name a target, the groups and flows there are, where the token is read from.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from bot.cli.client import ApiFailed, call
from bot.core.config import Config
from bot.core.durations import parse_duration


def _group_names(config: Config) -> list[str]:
    """Up to 20 group names, for an error naming a group that is not there."""
    try:
        page = call(config, "GET", "/api/v1/groups?limit=20")
    except ApiFailed:
        return []
    return [str(g["name"]) for g in page["groups"]]


def _advice(config: Config, exc: ApiFailed) -> str:
    """The error, and what a CLI user can do about it."""
    if exc.code == "unknown_group":
        names = _group_names(config)
        there = ", ".join(repr(n) for n in names) if names else "none yet"
        return f"{exc}; the groups are: {there} (chasqui contacts import FILE --group NAME)"
    if exc.code == "unknown_flow" and exc.details.get("flows"):
        return f"{exc}; the flows loaded: {', '.join(exc.details['flows'])}"
    if exc.code == "unknown_contact":
        return f"{exc}; --contact takes a contact's uuid, --urn a URN such as whatsapp:+51987654321"
    return str(exc)


def _line(start: dict[str, Any]) -> str:
    c, m = start["counts"], start["messages"]
    skipped = ", ".join(f"{k} {v}" for k, v in c["skipped_by_reason"].items() if v)
    bar_width = 30
    done = c["started"] + c["skipped"] + c["failed"]
    filled = int(bar_width * done / c["targeted"]) if c["targeted"] else 0
    bar = "#" * filled + "." * (bar_width - filled)
    return (
        f"[{bar}] {start['status']:<10} targeted {c['targeted']}, started {c['started']}, "
        f"skipped {c['skipped']}{f' ({skipped})' if skipped else ''}, failed {c['failed']}"
        f"{f', sending {sending}' if (sending := start.get('sending')) else ''} | "
        f"messages sent {m['sent']}, delivered {m['delivered']}, read {m['read']}, "
        f"failed {m['failed']}"
    )


SETTLE = 30.0  # after the expansion, how long to wait for the first messages' outcomes


def follow(config: Config, uuid: str, interval: float = 0.5, settle: float = SETTLE) -> int:
    """Print the start's progress until it is finished and its contacts' first messages have
    an outcome (or ``settle`` seconds after it finished); 0 if it completed and reached
    someone, 1 if it failed, was cancelled, or every contact it tried failed."""
    tty = sys.stdout.isatty()
    deadline: float | None = None
    while True:
        start = call(config, "GET", f"/api/v1/starts/{uuid}")
        line = _line(start)
        print(("\r" + line) if tty else line, end="" if tty else "\n", flush=True)
        if start["status"] in ("completed", "failed", "cancelled"):
            if deadline is None:  # counted from when it finished: an old start does not wait
                ended = start.get("completed_on") or start.get("cancelled_on") or time.time()
                deadline = time.monotonic() + max(0.0, float(ended) + settle - time.time())
            if not start.get("sending") or time.monotonic() >= deadline:
                break
        time.sleep(interval)
    if tty:
        print()
    c = start["counts"]
    if start["status"] != "completed":
        print(
            f"the start {start['status']}: {start.get('reason', '')}".rstrip(": "), file=sys.stderr
        )
        return 1
    if c["failed"] and not c["started"]:
        print(
            f"every contact failed ({c['failed']}): chasqui starts {uuid[:8]} --failed",
            file=sys.stderr,
        )
        return 1
    return 0


TARGET_FLAGS = "--group NAME, --urn URN or --contact UUID (each repeatable)"


def send_at(value: str, now: float) -> str | float:
    """``--send-at``: an ISO datetime (UTC unless it says), unix seconds, or ``+2h`` from now."""
    if value.startswith("+"):
        try:
            return now + parse_duration(value[1:])
        except ValueError as exc:
            raise ApiFailed(f"--send-at {value}: {exc} (e.g. +30m, +2h)") from None
    try:
        return float(value)
    except ValueError:
        return value  # the server reads ISO 8601 and says when it cannot


def start_body(args: argparse.Namespace) -> dict[str, Any]:
    """The body of POST /api/v1/starts from ``chasqui start``'s flags."""
    if not (args.group or args.urn or args.contact):
        raise ApiFailed(f"name who to start: {TARGET_FLAGS}")
    body: dict[str, Any] = {
        "flow": args.flow,
        "groups": args.group or [],
        "urns": args.urn or [],
        "contacts": args.contact or [],
    }
    if args.param:
        body["params"] = dict(p.split("=", 1) for p in args.param)
    if args.exclude_active:
        body["exclude_active"] = True
    if args.send_at:
        body["send_at"] = send_at(args.send_at, time.time())
    if args.spread_over:
        body["spread_over"] = args.spread_over
    return body


def print_preview(preview: dict[str, Any]) -> int:
    """What a start would do; 1 when its opening template cannot be sent."""
    c = preview["counts"]
    print(f"{preview['flow']}: would start {c['started']} of {c['targeted']} contacts")
    for reason, n in c["skipped_by_reason"].items():
        if n:
            print(f"  skipped {n}: {reason}")
    for reason, n in c.get("failed_by_reason", {}).items():
        print(f"  failed {n}: {reason}")
    template = preview.get("template")
    if template:
        print(f"opens with the template {template['name']} ({template['language']})")
    opening = template["node"] if template else None
    for p in preview["template_problems"]:
        fatal = " (every contact would fail)" if p["node"] == opening else ""
        print(f"  problem at {p['node']} on {p['channel']}: {p['code']}: {p['message']}{fatal}")
    return 1 if any(p["node"] == opening for p in preview["template_problems"]) else 0


def cmd_start(config: Config, args: argparse.Namespace) -> int:
    try:
        body = start_body(args)
        if args.preview:
            return print_preview(call(config, "POST", "/api/v1/starts/preview", body))
        start = call(config, "POST", "/api/v1/starts", body)
        when = ""
        if start.get("send_at"):
            when = time.strftime(" at %Y-%m-%d %H:%M:%S UTC", time.gmtime(start["send_at"]))
        print(f"start {start['uuid']} of {args.flow}{when}")
        return follow(config, start["uuid"]) if not (args.no_wait or when) else 0
    except ApiFailed as exc:
        print(f"error: {_advice(config, exc)}", file=sys.stderr)
        return 1


def find_start(config: Config, prefix: str) -> str:
    """The uuid of the one start whose uuid begins with ``prefix``."""
    prefix = prefix.strip().lower()
    if len(prefix) == 36:  # a whole uuid
        return prefix
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page = call(
            config, "GET", "/api/v1/starts?limit=200" + (f"&cursor={cursor}" if cursor else "")
        )
        found += [s for s in page["starts"] if s["uuid"].startswith(prefix)]
        cursor = page.get("next")
        if not cursor or len(found) > 10:
            break
    if not found:
        raise ApiFailed(f"unknown_start: no start begins with {prefix!r}")
    if len(found) > 1:
        names = "; ".join(f"{s['uuid']} ({s['flow']})" for s in found[:10])
        more = " and more" if len(found) > 10 else ""
        raise ApiFailed(f"ambiguous_start: {prefix!r} begins {names}{more}; give more of the uuid")
    return str(found[0]["uuid"])


def _failed(config: Config, uuid: str) -> None:
    """Print the start's failed contacts, each with its reason in words."""
    cursor: str | None = None
    while True:
        path = f"/api/v1/starts/{uuid}/contacts?status=failed" + (
            f"&cursor={cursor}" if cursor else ""
        )
        page = call(config, "GET", path)
        for item in page["contacts"]:
            print(f"{item['contact']}  {item.get('reason', '')}: {item.get('message', '')}")
        cursor = page.get("next")
        if not cursor:
            return


def cmd_starts(config: Config, args: argparse.Namespace) -> int:
    words: list[str] = list(args.target or [])
    try:
        if words and words[0] in ("cancel", "retry"):
            if len(words) != 2:
                raise ApiFailed(f"which start? chasqui starts {words[0]} UUID (or its beginning)")
            uuid = find_start(config, words[1])
            done = call(config, "POST", f"/api/v1/starts/{uuid}/{words[0]}")
            if words[0] == "cancel":
                print(f"start {uuid} cancelled (the contacts it started stay in their runs)")
                return 0
            r = done.get("retry") or {}
            left = f", {r['skipped']} left out (started since)" if r.get("skipped") else ""
            print(f"start {done['uuid']} retries {r.get('contacts', 0)} failed contacts{left}")
            return follow(config, done["uuid"]) if not args.no_wait else 0
        if len(words) > 1:
            raise ApiFailed(f"one start at a time: chasqui starts UUID, not {' '.join(words)}")
        if words:
            uuid = find_start(config, words[0])
            if getattr(args, "failed", False):
                _failed(config, uuid)
                return 0
            return follow(config, uuid)
        page = call(config, "GET", "/api/v1/starts?limit=50")
        for start in page["starts"]:
            print(f"{start['uuid']}  {start['flow']:<20} {_line(start)}")
        if page["next"]:
            print("(the latest 50; GET /api/v1/starts?cursor=<next> for more)")
        return 0
    except ApiFailed as exc:
        print(f"error: {_advice(config, exc)}", file=sys.stderr)
        return 1
