"""The starts API: start a flow for contacts, URNs and groups; preview; follow; cancel; retry.

A request is validated and stored, and answered 202 at once: the expansion of groups happens in
the background (:mod:`bot.work.starts`), so the answer never depends on a group's size. See
docs/starts.md.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from bot.api.contacts import _body, _group_name, _now, _runtime, _store, contacts_for_urns
from bot.api.contacts import _urn as _valid_urn
from bot.core.durations import parse_duration
from bot.core.errors import ApiError
from bot.store import Store
from bot.store.paging import page_limit
from bot.work.starts import (
    FINISHED,
    PENDING,
    SKIP_REASONS,
    STATUSES,
    Starter,
    decide,
    explain,
    opening_template,
    public,
    standing_failures,
)

MAX_TARGETS = 10_000  # contacts + URNs named in one request (groups are unbounded)
IDEMPOTENCY_TTL = 7 * 86400
BODY_KEYS = {
    "flow",
    "contacts",
    "groups",
    "urns",
    "params",
    "restart_participants",
    "exclude_active",
    "send_at",
    "spread_over",
}


@dataclass
class StartBody:
    flow: str
    contacts: list[str] = field(default_factory=list)
    groups: dict[str, str] = field(default_factory=dict)  # name -> id
    urns: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    restart_participants: bool = True
    exclude_active: bool = False
    send_at: float | None = None
    spread_over: int | None = None


def _str_list(body: dict[str, Any], key: str) -> list[str]:
    value = body.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError(400, "bad_request", f"{key} must be a list of strings")
    return list(dict.fromkeys(value))


def _flag(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise ApiError(400, "bad_request", f"{key} must be true or false")
    return value


def _send_at(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
    raise ApiError(400, "bad_request", "send_at must be an ISO datetime or unix seconds")


async def _parse(request: web.Request) -> StartBody:
    body = await _body(request)
    unknown = set(body) - BODY_KEYS
    if unknown:
        raise ApiError(400, "bad_request", f"unknown keys: {', '.join(sorted(unknown))}")
    flows = _runtime(request).registry.flows
    flow = body.get("flow")
    if not isinstance(flow, str) or flow not in flows:
        raise ApiError(404, "unknown_flow", f"no flow {flow!r}", {"flows": sorted(flows)})
    contacts, urns = _str_list(body, "contacts"), _str_list(body, "urns")
    names = [_group_name(g) for g in _str_list(body, "groups")]
    if not (contacts or urns or names):
        raise ApiError(400, "bad_request", "name some contacts, urns or groups")
    if len(contacts) + len(urns) > MAX_TARGETS:
        raise ApiError(400, "bad_request", f"at most {MAX_TARGETS:,} contacts and urns")
    params = body.get("params") or {}
    if not isinstance(params, dict):
        raise ApiError(400, "bad_request", "params must be an object")
    spread = body.get("spread_over")
    try:
        spread_over = parse_duration(spread) if spread is not None else None
    except ValueError as exc:
        raise ApiError(400, "bad_request", f"spread_over: {exc}") from None
    groups = await _store(request).group_ids(names)
    for name in names:
        if name not in groups:
            raise ApiError(404, "unknown_group", f"no group {name!r}")
    return StartBody(
        flow=flow,
        contacts=contacts,
        groups=groups,
        urns=list(dict.fromkeys(_valid_urn(u) for u in urns)),
        params=params,
        restart_participants=_flag(body, "restart_participants", True),
        exclude_active=_flag(body, "exclude_active", False),
        send_at=_send_at(body.get("send_at")),
        spread_over=spread_over,
    )


def _starter(request: web.Request) -> Starter:
    worker = _runtime(request).worker
    assert worker is not None, "runtime not started"
    starter: Starter = worker.starter
    return starter


async def _start_or_404(store: Store, sid: str) -> dict[str, str]:
    record = await store.start_record(sid)
    if record is None:
        raise ApiError(404, "unknown_start", f"no start {sid}")
    return record


async def _create(
    request: web.Request,
    spec: StartBody,
    targets: list[str],
    extra: dict[str, Any] | None = None,
) -> dict[str, str]:
    """Store the start (its named contacts as a set, groups as sources) and queue it."""
    store, now = _store(request), _now(request)
    fields: dict[str, Any] = {
        "flow": spec.flow,
        "status": PENDING,
        "params": json.dumps(spec.params),
        "groups": json.dumps(list(spec.groups)),
        "restart_participants": "1" if spec.restart_participants else "0",
        "exclude_active": "1" if spec.exclude_active else "0",
        "created_on": now,
        **(extra or {}),
    }
    if spec.send_at is not None:
        fields["send_at"] = spec.send_at
    if spec.spread_over:
        fields["spread_over"] = spec.spread_over
    sid = await store.create_start(fields, targets, list(spec.groups.values()), now)
    await _starter(request).schedule(sid, spec.send_at)
    record = await store.start_record(sid)
    assert record is not None
    return record


async def create_start(request: web.Request) -> web.Response:
    spec = await _parse(request)
    store = _store(request)
    key = request.headers.get("Idempotency-Key", "").strip()
    if key:
        existing = await store.idempotent_start(key)
        record = await store.start_record(existing) if existing else None
        if record is not None:
            return web.json_response(public(record), status=200)
    targets = list(spec.contacts)
    if spec.urns:
        found = await contacts_for_urns(store, spec.urns, _now(request), create=True)
        targets += [c for c in found if c]
    targets = list(dict.fromkeys(targets))
    if key:
        sid_claim = str(uuid.uuid4())
        if not await store.claim_idempotency(key, sid_claim, IDEMPOTENCY_TTL):
            existing = await store.idempotent_start(key)
            record = await store.start_record(existing) if existing else None
            if record is not None:
                return web.json_response(public(record), status=200)
    record = await _create(request, spec, targets)
    if key:
        await store.set_idempotency(key, record["uuid"], IDEMPOTENCY_TTL)
    return web.json_response(public(record), status=202)


async def preview_start(request: web.Request) -> web.Response:
    """How many the start would reach and what each exclusion removes; starts nothing. Groups
    are streamed (SSCAN), a contact in several sources counted once."""
    spec = await _parse(request)
    store = _store(request)
    engine = _runtime(request).engine
    named = list(spec.contacts)
    new_urns: list[str] = []
    if spec.urns:
        found = await store.contact_ids_for_urns(spec.urns)
        named += [c for c in found if c]
        new_urns = [u for u, c in zip(spec.urns, found, strict=True) if c is None]
    named = list(dict.fromkeys(named))
    counts: dict[str, int] = {"targeted": 0, "started": 0, "failed": 0}
    skipped = dict.fromkeys(SKIP_REASONS, 0)
    failed: dict[str, int] = {}

    def tally(outcome: str, reason: str) -> None:
        counts["targeted"] += 1
        if outcome == "started":
            counts["started"] += 1
        elif outcome == "skipped":
            skipped[reason] = skipped.get(reason, 0) + 1
        else:
            counts["failed"] += 1
            failed[reason] = failed.get(reason, 0) + 1

    async def count(cids: list[str]) -> None:
        facts = await store.contact_facts(cids, not spec.restart_participants)
        for contact, session, flows_run in facts:
            tally(
                *decide(
                    engine,
                    spec.flow,
                    contact,
                    session,
                    flows_run,
                    spec.restart_participants,
                    spec.exclude_active,
                )
            )

    for n in range(0, len(named), 500):
        await count(named[n : n + 500])
    for urn in new_urns:  # a contact created by the start: new, active, no runs
        tally(*decide(engine, spec.flow, {"urns": [urn]}, None, set(), True, False))
    named_set = set(named)
    earlier: list[str] = []
    for gid in spec.groups.values():
        async for members in store.group_members(gid, batch=500):
            cids = [c for c in members if c not in named_set]
            for other in earlier:  # in an earlier group: counted there
                if cids:
                    inside = await store.is_member(other, cids)
                    cids = [c for c, i in zip(cids, inside, strict=True) if not i]
            if cids:
                await count(cids)
        earlier.append(gid)
    flow = engine.flows[spec.flow]
    return web.json_response(
        {
            "flow": spec.flow,
            "contacts": counts["started"],
            "targeted": counts["targeted"],
            "skipped": sum(skipped.values()),
            "skipped_by_reason": skipped,
            "failed": counts["failed"],
            "failed_by_reason": failed,
            "template": opening_template(flow),
        }
    )


async def list_starts(request: web.Request) -> web.Response:
    """Newest first, filtered by ``flow`` and ``status``; ``limit`` (50), ``before`` paging."""
    q = request.query
    limit = page_limit(q)
    try:
        before = float(q["before"]) if "before" in q else None
    except ValueError:
        raise ApiError(400, "bad_request", "before must be a number") from None
    status = q.get("status")
    if status is not None and status not in STATUSES:
        raise ApiError(400, "bad_request", f"status must be one of {', '.join(STATUSES)}")
    store = _store(request)
    found: list[dict[str, Any]] = []
    while len(found) < limit:
        page = await store.start_page(before, 200)
        if not page:
            break
        for sid, score in page:
            record = await store.start_record(sid)
            before = score
            if record is None:
                continue
            if q.get("flow") and record["flow"] != q["flow"]:
                continue
            if status and record["status"] != status:
                continue
            found.append(public(record))
            if len(found) == limit:
                break
        if len(page) < 200:
            break
    return web.json_response({"starts": found})


async def get_start(request: web.Request) -> web.Response:
    return web.json_response(
        public(await _start_or_404(_store(request), request.match_info["uuid"]))
    )


async def start_contacts(request: web.Request) -> web.Response:
    """Per-contact outcomes, ``?status=started|skipped|failed``, paged by ``cursor``."""
    store = _store(request)
    sid = request.match_info["uuid"]
    await _start_or_404(store, sid)
    q = request.query
    status = q.get("status")
    if status is not None and status not in ("started", "skipped", "failed"):
        raise ApiError(400, "bad_request", "status must be started, skipped or failed")
    try:
        cursor = int(q.get("cursor", "0"))
        limit = int(q.get("limit", "500"))
    except ValueError:
        raise ApiError(400, "bad_request", "cursor and limit must be numbers") from None
    if not 1 <= limit <= 5000:
        raise ApiError(400, "bad_request", "limit must be 1 to 5000")
    page, cursor = await store.start_outcomes(sid, status, cursor, limit)
    return web.json_response({"contacts": explain(page), "next": str(cursor) if cursor else None})


async def cancel_start(request: web.Request) -> web.Response:
    store = _store(request)
    sid = request.match_info["uuid"]
    record = await _start_or_404(store, sid)
    if record["status"] in FINISHED and record["status"] != "cancelled":
        raise ApiError(409, "start_finished", f"the start is {record['status']} already")
    if record["status"] != "cancelled":
        await store.end_start(sid, {"status": "cancelled", "cancelled_on": _now(request)})
    record = await _start_or_404(store, sid)
    return web.json_response(public(record))


async def retry_start(request: web.Request) -> web.Response:
    """A new start of the same flow (same params and options) for the failed contacts only."""
    store = _store(request)
    sid = request.match_info["uuid"]
    record = await _start_or_404(store, sid)
    targets, skipped = await standing_failures(store, record)
    if not targets and skipped:
        raise ApiError(
            409,
            "nothing_to_retry",
            "every contact that failed was started since by another start",
            {"skipped_by_reason": skipped},
        )
    if not targets:
        raise ApiError(409, "nothing_to_retry", "no contact of this start failed")
    if record["flow"] not in _runtime(request).registry.flows:
        raise ApiError(404, "unknown_flow", f"no flow {record['flow']!r}")
    spec = StartBody(
        flow=record["flow"],
        params=json.loads(record.get("params") or "{}"),
        restart_participants=True,
        exclude_active=record.get("exclude_active") == "1",
    )
    retry = {
        "contacts": len(targets),
        "skipped": sum(skipped.values()),
        "skipped_by_reason": skipped,
    }
    new = await _create(request, spec, targets, {"retry_of": sid, "retry": json.dumps(retry)})
    return web.json_response(public(new), status=202)


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/starts", list_starts)
    app.router.add_post("/api/v1/starts", create_start)
    app.router.add_post("/api/v1/starts/preview", preview_start)
    app.router.add_get("/api/v1/starts/{uuid}", get_start)
    app.router.add_get("/api/v1/starts/{uuid}/contacts", start_contacts)
    app.router.add_post("/api/v1/starts/{uuid}/cancel", cancel_start)
    app.router.add_post("/api/v1/starts/{uuid}/retry", retry_start)
