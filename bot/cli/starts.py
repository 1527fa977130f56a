"""``chasqui start`` and ``chasqui starts``: send a flow and follow it from a terminal.

They talk to the running server's admin API (``server.url`` and the admin token of the same
config), so they work from any machine that has the config, and the server does the work.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from bot.core.config import Config
from bot.work.runtime import admin_token


class ApiFailed(Exception):
    pass


def _call(config: Config, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        config.server.url + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={
            "Authorization": f"Bearer {admin_token(config)}",
            "Content-Type": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            error = json.loads(exc.read())["error"]
            raise ApiFailed(f"{error['code']}: {error['message']}") from None
        except (ValueError, KeyError):
            raise ApiFailed(f"HTTP {exc.code}") from None
    except OSError as exc:
        raise ApiFailed(
            f"cannot reach the server at {config.server.url} ({exc}); is `chasqui serve` running?"
        ) from None


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
        start = _call(config, "GET", f"/api/v1/starts/{uuid}")
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


def cmd_start(config: Config, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {
        "flow": args.flow,
        "groups": args.group or [],
        "urns": args.urn or [],
        "contacts": args.contact or [],
    }
    if args.param:
        body["params"] = dict(p.split("=", 1) for p in args.param)
    try:
        start = _call(config, "POST", "/api/v1/starts", body)
        print(f"start {start['uuid']} of {args.flow}")
        return follow(config, start["uuid"]) if not args.no_wait else 0
    except ApiFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def find_start(config: Config, prefix: str) -> str:
    """The uuid of the one start whose uuid begins with ``prefix``."""
    prefix = prefix.strip().lower()
    if len(prefix) == 36:  # a whole uuid
        return prefix
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page = _call(
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
        page = _call(config, "GET", path)
        for item in page["contacts"]:
            print(f"{item['contact']}  {item.get('reason', '')}: {item.get('message', '')}")
        cursor = page.get("next")
        if not cursor:
            return


def cmd_starts(config: Config, args: argparse.Namespace) -> int:
    try:
        if args.uuid:
            uuid = find_start(config, args.uuid)
            if getattr(args, "failed", False):
                _failed(config, uuid)
                return 0
            return follow(config, uuid)
        page = _call(config, "GET", "/api/v1/starts?limit=50")
        for start in page["starts"]:
            print(f"{start['uuid']}  {start['flow']:<20} {_line(start)}")
        if page["next"]:
            print("(the latest 50; GET /api/v1/starts?cursor=<next> for more)")
        return 0
    except ApiFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
