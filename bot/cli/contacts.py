"""``chasqui contacts import|list|show|history`` and ``chasqui runs``, straight on Redis.

Each calls the service the admin API and Studio call (:mod:`bot.api.contacts`,
:mod:`bot.api.runs`, the import of :mod:`bot.work.contacts_import`); this module is only the
terminal side of them: what is printed, and the exit code (0 fine, 1 a row failed, 2 a usage
error said in words).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bot.api import contacts as contacts_api
from bot.api import models as m
from bot.api.runs import find_runs, history, runs_of
from bot.core.config import Config
from bot.core.contacts import UrnError, group_name_problem, normalize_urn
from bot.core.errors import ApiError
from bot.core.validation import summary
from bot.store import Store
from bot.work.contacts_import import Importer, file_chunks, import_csv
from bot.work.host import StoreHost, routes_of
from bot.work.runtime import Runtime
from channels.protocol import build_channels


async def import_file(store: Store, path: Path, groups: list[str], now: float) -> int:
    """The CLI's import: prints the report; exit code 1 when a row failed, 2 on a bad file."""
    started = time.monotonic()
    for group in groups:
        problem = group_name_problem(group)
        if problem is not None:
            print(f"{path}: {problem}", file=sys.stderr)
            return 2
    try:
        report = await import_csv(Importer(store, now, groups), file_chunks(path))
    except ApiError as exc:
        line = (exc.details or {}).get("line")
        print(
            f"{path}:{line}: {exc.message}" if line else f"{path}: {exc.message}", file=sys.stderr
        )
        return 2
    except OSError as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 2
    for e in report.errors:
        print(f"{path}:{e['row']}: {e['code']}: {e['message']}")
    if report.failed > len(report.errors):
        print(f"... and {report.failed - len(report.errors)} more errors")
    print(
        f"{report.rows} rows: {report.created} created, {report.updated} updated, "
        f"{report.failed} failed ({time.monotonic() - started:.1f}s)"
    )
    return 1 if report.failed else 0


# -- list, show, history, runs: the services the API and Studio call, printed ------------------
TICKS = {"queued": "…", "sent": "✓", "delivered": "✓✓", "read": "✓✓ read", "failed": "✗"}


def when(at: Any) -> str:
    """A time as the terminal's local time, to the minute."""
    try:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(float(at)))
    except (TypeError, ValueError, OverflowError):
        return "?"


def contact_line(contact: dict[str, Any]) -> str:
    groups = ", ".join(contact.get("groups") or [])
    status = contact.get("status", "active")
    return (
        f"{contact['uuid']}  {str(contact.get('name') or '-')[:28]:<28} "
        f"{', '.join(contact.get('urns') or []):<26} {status:<9} {groups}"
    ).rstrip()


def _query(args: argparse.Namespace) -> m.ContactQuery | None:
    """The filters of ``contacts list|export`` as the API's query model; None (said) if wrong."""
    paging = {"limit": args.limit, "cursor": args.cursor} if hasattr(args, "limit") else {}
    try:
        return m.ContactQuery(
            q=args.search, group=args.group, status=args.status, in_flow=args.in_flow, **paging
        )
    except ValidationError as exc:
        print(f"error: {summary(exc)}", file=sys.stderr)
        return None


async def list_contacts(store: Store, args: argparse.Namespace) -> int:
    query = _query(args)
    if query is None:
        return 2
    try:
        found = await contacts_api.find(store, query)
    except ApiError as exc:
        return await _refused(store, exc)
    for contact in found.contacts:
        print(contact_line(contact))
    if not found.contacts:
        print("no contacts found", file=sys.stderr)
    if found.next:
        print(f"... more: add --cursor {found.next}", file=sys.stderr)
    return 0


async def export_contacts(store: Store, args: argparse.Namespace) -> int:
    """The contacts a list would show, all pages, as CSV on stdout."""
    query = _query(args)
    if query is None:
        return 2
    try:
        async for text in contacts_api.export_csv(store, query):
            sys.stdout.write(text)
    except ApiError as exc:
        return await _refused(store, exc)
    return 0


async def _refused(store: Store, exc: ApiError) -> int:
    """An error of the services, for a terminal: which groups exist when one is unknown."""
    print(f"error: {exc.message}", file=sys.stderr)
    if exc.code == "unknown_group":
        names = [g["name"] for g in await store.groups()]
        print(f"the groups are: {', '.join(names) or 'none yet'}", file=sys.stderr)
    return 2


async def find_one(store: Store, ref: str) -> dict[str, Any] | str:
    """The contact ``ref`` names -- a uuid, a URN, or search words matching exactly one --
    or what to tell the user."""
    contact = await store.get_contact(ref)
    if contact is not None:
        return contact
    if ":" in ref:
        try:
            cid = await store.contact_id_for_urn(normalize_urn(ref))
        except UrnError as exc:
            return str(exc)
        found = await store.get_contact(cid) if cid else None
        return found if found is not None else f"no contact has the URN {ref}"
    page = await contacts_api.find(store, m.ContactQuery(q=ref, limit=6))
    if len(page.contacts) == 1:
        return page.contacts[0]
    if not page.contacts:
        return f"no contact matches {ref!r} (give a uuid, a URN, or words of the name)"
    lines = "\n".join("  " + contact_line(c) for c in page.contacts[:5])
    more = " (and more)" if len(page.contacts) > 5 else ""
    return f"{ref!r} matches several contacts{more}; give the uuid or URN:\n{lines}"


async def show_contact(runtime: Runtime, args: argparse.Namespace) -> int:
    found = await find_one(runtime.store, args.contact)
    if isinstance(found, str):
        print(found, file=sys.stderr)
        return 2
    c = found
    now = runtime.clock.now()
    print(f"{c.get('name') or '(no name)'}  {c['uuid']}")
    print(f"  urns:     {', '.join(c.get('urns') or [])}")
    print(f"  status:   {c.get('status', 'active')}   language: {c.get('language') or '-'}")
    print(f"  groups:   {', '.join(c.get('groups') or []) or '-'}")
    for key, value in sorted((c.get("fields") or {}).items()):
        print(f"  @fields.{key}: {value}")
    print(f"  created:  {when(c.get('created_on'))}")
    for window in contacts_api.windows(c, runtime.registry.routes):
        state = f"open until {when(window.until)}" if window.open(now) else "closed"
        print(f"  window on {window.channel}: {state}")
    for run in (await runs_of(runtime.store, c["uuid"]))[:10]:
        print("  " + run_line(run))
    return 0


def run_line(run: dict[str, Any], contact: str = "") -> str:
    path = " > ".join(str(step[0]) for step in run.get("path") or [])
    results = ", ".join(
        f"{k}={v.get('category', v.get('value'))}" for k, v in (run.get("results") or {}).items()
    )
    who = f"{contact}  " if contact else ""
    return (
        f"{when(run.get('created_on'))}  {who}{run['flow']:<18} {run['status']:<11} {path}"
        f"{f'  [{results}]' if results else ''}"
    )


def history_line(item: dict[str, Any]) -> str:
    at = when(item.get("at"))
    kind = item["type"]
    if kind in ("message_in", "message_out"):
        msg = item["message"]
        arrow = "<-" if kind == "message_in" else "->"
        text = " ".join(str(msg.get("text") or "").split())
        template = msg.get("template") or {}
        label = f"[template {template.get('name')}] " if template else ""
        status = "" if kind == "message_in" else f"  {TICKS.get(msg.get('status', ''), '')}"
        error = msg.get("error") or {}
        why = f"  failed: {error.get('message') or error.get('code')}" if error else ""
        return f"{at}  {arrow} {label}{text}{status}{why}"
    if kind.startswith("run_"):
        reason = f": {item['reason']}" if item.get("reason") else ""
        return f"{at}  {item['flow']}: {kind.removeprefix('run_')}{reason}"
    return f"{at}  {kind.replace('_', ' ')}"


async def contact_history(store: Store, args: argparse.Namespace) -> int:
    found = await find_one(store, args.contact)
    if isinstance(found, str):
        print(found, file=sys.stderr)
        return 2
    print(f"{found.get('name') or '(no name)'}  {found['uuid']}")
    for item in await history(store, found["uuid"]):
        print(history_line(item))
    return 0


async def list_runs(runtime: Runtime, args: argparse.Namespace) -> int:
    try:
        query = m.RunQuery(flow=args.flow, status=args.status, limit=args.limit, cursor=args.cursor)
    except ValidationError as exc:
        print(f"error: {summary(exc)}", file=sys.stderr)
        return 2
    try:
        found = await find_runs(runtime.store, runtime.registry.flows, query)
    except ApiError as exc:
        flows = ", ".join(runtime.registry.flows) or "none loaded"
        print(f"error: {exc.message}; the flows are: {flows}", file=sys.stderr)
        return 2
    names = {
        c["uuid"]: str(c.get("name") or c["uuid"][:8])
        for c in await runtime.store.contacts(list({r["contact"] for r in found.runs}))
        if c is not None
    }
    for run in found.runs:
        print(run_line(run, f"{names.get(run['contact'], run['contact'][:8])[:20]:<20}"))
    if not found.runs:
        print("no runs found", file=sys.stderr)
    if found.next:
        print(f"... more: add --cursor {found.next}", file=sys.stderr)
    return 0


def cmd_contacts(config: Config, args: argparse.Namespace) -> int:
    """``chasqui contacts import|list|show|history``: straight on Redis, through the services
    the admin API and Studio call."""

    async def run() -> int:
        runtime = Runtime(config)
        await runtime.connect()
        try:
            if args.action == "import":
                return await import_file(
                    runtime.store, Path(args.file), args.group, runtime.clock.now()
                )
            if args.action == "list":
                return await list_contacts(runtime.store, args)
            if args.action == "export":
                return await export_contacts(runtime.store, args)
            if args.action == "history":
                return await contact_history(runtime.store, args)
            runtime.registry.routes = routes_of(
                build_channels(config.channels, StoreHost(runtime.store))
            )
            return await show_contact(runtime, args)
        finally:
            await runtime.stop()

    return asyncio.run(run())


def cmd_runs(config: Config, args: argparse.Namespace) -> int:
    async def run() -> int:
        runtime = Runtime(config)
        runtime.load_flows()
        await runtime.connect()
        try:
            return await list_runs(runtime, args)
        finally:
            await runtime.stop()

    return asyncio.run(run())
