"""The starts API: start a flow for contacts, URNs and groups (or one contact); preview;
follow; cancel; retry.

A request is validated and stored, and answered 202 at once: the expansion of groups happens in
the background (:mod:`bot.work.starts`), so the answer never depends on a group's size. See
docs/starts.md.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from bot.api import models as m
from bot.api.context import now, runtime, starter, store
from bot.api.lookup import contact_or_404, contacts_for_urns, groups_or_404, valid_urn
from bot.api.routes import Op, body, query
from bot.core.durations import parse_duration
from bot.core.errors import ApiError
from bot.store import Store
from bot.store.paging import decode_cursor, filtered_page
from bot.work.flowcheck import flow_template_problems, synced_channels
from bot.work.starts import (
    FINISHED,
    PENDING,
    SKIP_REASONS,
    decide,
    explain,
    opening_problem,
    opening_template,
    public,
    standing_failures,
)
from channels.protocol import Channel

IDEMPOTENCY_TTL = 7 * 86400
START_MEMBER = re.compile(r"^[0-9.e+-]+\|[0-9a-f-]{36}$")


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


def _send_at(value: str | float | None) -> float | None:
    if value is None or isinstance(value, float | int):
        return None if value is None else float(value)
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, "invalid_body", "send_at: an ISO datetime or unix seconds") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


# A start's times (docs/starts.md): a send_at a little late goes now, older is a mistake (0,
# a date typed wrong); over a year ahead is too (unix milliseconds read as seconds: year 57,000).
SEND_AT_LATE = 3600
SEND_AT_AHEAD = 366 * 86400
SPREAD_MAX = 7 * 86400


def _within_bounds(send_at: float | None, spread_over: int | None, at: float) -> None:
    if send_at is not None and not at - SEND_AT_LATE <= send_at <= at + SEND_AT_AHEAD:
        raise ApiError(
            400,
            "invalid_body",
            "send_at: from an hour ago (a late one goes now) to 366 days ahead, in unix seconds"
            " or ISO 8601",
            {"send_at": send_at, "now": at},
        )
    if spread_over is not None and not 0 <= spread_over <= SPREAD_MAX:
        raise ApiError(400, "invalid_body", "spread_over: at most 7 days (7d)")


def _known_flow(request: web.Request, flow: str) -> str:
    flows = runtime(request).registry.flows
    if flow not in flows:
        raise ApiError(404, "unknown_flow", f"no flow {flow!r}", {"flows": sorted(flows)})
    return flow


async def _known_contacts(st: Store, cids: list[str]) -> list[str]:
    """The contacts named, each once; 404 ``unknown_contact`` naming the first missing."""
    cids = list(dict.fromkeys(cids))
    for n in range(0, len(cids), 1000):
        chunk = cids[n : n + 1000]
        for cid, contact in zip(chunk, await st.contacts(chunk), strict=True):
            if contact is None:
                raise ApiError(404, "unknown_contact", f"no contact {cid}", {"contact": cid})
    return cids


async def _parse(request: web.Request) -> StartBody:
    spec = await body(request, m.StartCreate)
    st = store(request)
    try:
        spread_over = parse_duration(spec.spread_over) if spec.spread_over is not None else None
    except ValueError as exc:
        raise ApiError(400, "invalid_body", f"spread_over: {exc}") from None
    send_at = _send_at(spec.send_at)
    _within_bounds(send_at, spread_over, now(request))
    flow = _known_flow(request, spec.flow)
    urns = list(dict.fromkeys(valid_urn(u) for u in spec.urns))
    groups = await groups_or_404(st, spec.groups)
    return StartBody(
        flow=flow,
        contacts=await _known_contacts(st, spec.contacts),
        groups={g["name"]: g["id"] for g in groups},
        urns=urns,
        params=spec.params,
        restart_participants=spec.restart_participants,
        exclude_active=spec.exclude_active,
        send_at=send_at,
        spread_over=spread_over,
    )


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
    *,
    inline: bool = False,
) -> dict[str, str]:
    """Store the start (its named contacts as a set, groups as sources) and queue it; or,
    ``inline``, expand its one chunk now, so that its contact's start event is queued before
    the answer (and before whatever the contact sends next)."""
    st, at = store(request), now(request)
    fields: dict[str, Any] = {
        "flow": spec.flow,
        "status": PENDING,
        "params": json.dumps(spec.params),
        "groups": json.dumps(list(spec.groups)),
        "restart_participants": "1" if spec.restart_participants else "0",
        "exclude_active": "1" if spec.exclude_active else "0",
        "created_on": at,
        **(extra or {}),
    }
    if spec.send_at is not None:
        fields["send_at"] = spec.send_at
    if spec.spread_over:
        fields["spread_over"] = spec.spread_over
    sid = await st.create_start(fields, targets, list(spec.groups.values()), at)
    if not inline or await starter(request).step(sid) != "done":
        await starter(request).schedule(sid, spec.send_at)
    record = await st.start_record(sid)
    assert record is not None
    return record


async def _template_checks(request: web.Request) -> list[Channel]:
    """The channels whose synced templates a flow's templates are checked against."""
    return await synced_channels(store(request), runtime(request).channels.values())


async def _sendable(request: web.Request, flow_id: str) -> None:
    """422 when the flow opens with a template that cannot be sent: every contact would fail."""
    flow = runtime(request).registry.flows[flow_id]
    problem = opening_problem(flow, await _template_checks(request))
    if problem is not None:
        code, message, details = problem
        raise ApiError(422, code, message, details)


async def create_start(request: web.Request) -> web.Response:
    spec = await _parse(request)
    await _sendable(request, spec.flow)
    st = store(request)
    key = request.headers.get("Idempotency-Key", "").strip()
    if key:
        existing = await st.idempotent_start(key)
        record = await st.start_record(existing) if existing else None
        if record is not None:
            return web.json_response(public(record), status=200)
    targets = list(spec.contacts)
    if spec.urns:
        found = await contacts_for_urns(st, spec.urns, now(request), create=True)
        targets += [c for c in found if c]
    targets = list(dict.fromkeys(targets))
    if key:
        sid_claim = str(uuid.uuid4())
        if not await st.claim_idempotency(key, sid_claim, IDEMPOTENCY_TTL):
            existing = await st.idempotent_start(key)
            record = await st.start_record(existing) if existing else None
            if record is not None:
                return web.json_response(public(record), status=200)
    record = await _create(request, spec, targets)
    if key:
        await st.set_idempotency(key, record["uuid"], IDEMPOTENCY_TTL)
    return web.json_response(public(record), status=202)


async def preview_start(request: web.Request) -> web.Response:
    """How many the start would reach and what each exclusion removes, counted under the
    names a start reports; starts nothing. Groups are streamed (SSCAN), a contact in several
    sources counted once."""
    spec = await _parse(request)
    st = store(request)
    engine = runtime(request).engine
    named = list(spec.contacts)
    new_urns: list[str] = []
    if spec.urns:
        found = await st.contact_ids_for_urns(spec.urns)
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
        facts = await st.contact_facts(cids, not spec.restart_participants)
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
        async for members in st.group_members(gid, batch=500):
            cids = [c for c in members if c not in named_set]
            for other in earlier:  # in an earlier group: counted there
                if cids:
                    inside = await st.is_member(other, cids)
                    cids = [c for c, i in zip(cids, inside, strict=True) if not i]
            if cids:
                await count(cids)
        earlier.append(gid)
    flow = engine.flows[spec.flow]
    return web.json_response(
        {
            "flow": spec.flow,
            "counts": {
                **counts,
                "skipped": sum(skipped.values()),
                "skipped_by_reason": skipped,
                "failed_by_reason": failed,
            },
            "template": opening_template(flow),
            "template_problems": [
                {"node": node.id, "channel": why.channel, "code": why.code, "message": why.message}
                for node, why in flow_template_problems(flow, await _template_checks(request))
            ],
        }
    )


async def start_contact(request: web.Request) -> web.Response:
    """Start (or restart) one contact in a flow: a start like any other, of one contact; any
    run it is waiting in is interrupted."""
    cid = (await contact_or_404(store(request), request.match_info["uuid"]))["uuid"]
    spec = await body(request, m.FlowStart)
    start = StartBody(flow=_known_flow(request, spec.flow), contacts=[cid], params=spec.params)
    await _sendable(request, start.flow)
    return web.json_response(public(await _create(request, start, [cid], inline=True)), status=202)


async def list_starts(request: web.Request) -> web.Response:
    """Newest first, filtered by ``flow`` and ``status``, paged like every list."""
    q = query(request, m.StartQuery)
    st = store(request)
    after = decode_cursor(q.cursor, START_MEMBER) if q.cursor else None

    async def fetch(last: str | None, count: int) -> list[str]:
        found: list[str] = []
        if last is None:
            page = await st.start_page(None, count)
            return [f"{score!r}|{sid}" for sid, score in page]
        score, cursor_sid = last.split("|", 1)
        at = float(score)
        offset = 0
        while len(found) < count:  # the cursor's own instant first: the members after it
            page = await st.start_page(at, count, inclusive=True, offset=offset)
            if not page:
                break
            offset += len(page)
            found += [f"{s!r}|{sid}" for sid, s in page if s < at or (s == at and sid < cursor_sid)]
        return found[:count]

    async def load_page(members: Sequence[str]) -> list[dict[str, Any] | None]:
        out: list[dict[str, Any] | None] = []
        for member in members:
            record = await st.start_record(member.split("|", 1)[1])
            if (
                record is None
                or q.flow not in (None, record["flow"])
                or q.status not in (None, record["status"])
            ):
                out.append(None)
            else:
                out.append(public(record))
        return out

    page = await filtered_page(fetch, load_page, after, q.limit)
    return web.json_response({"starts": page["items"], "next": page["next"]})


async def get_start(request: web.Request) -> web.Response:
    return web.json_response(
        public(await _start_or_404(store(request), request.match_info["uuid"]))
    )


async def start_contacts(request: web.Request) -> web.Response:
    """Per-contact outcomes, ``?status=started|skipped|failed``, paged like every list."""
    st = store(request)
    sid = request.match_info["uuid"]
    await _start_or_404(st, sid)
    q = query(request, m.OutcomeQuery)
    cursor = 0
    if q.cursor:
        if not q.cursor.isdigit():
            raise ApiError(400, "bad_request", "cursor is not one this API gave")
        cursor = int(q.cursor)
    page, cursor = await st.start_outcomes(sid, q.status, cursor, q.limit)
    return web.json_response({"contacts": explain(page), "next": str(cursor) if cursor else None})


async def cancel_start(request: web.Request) -> web.Response:
    st = store(request)
    sid = request.match_info["uuid"]
    record = await _start_or_404(st, sid)
    if record["status"] in FINISHED and record["status"] != "cancelled":
        raise ApiError(409, "start_finished", f"the start is {record['status']} already")
    if record["status"] != "cancelled":
        await st.end_start(sid, {"status": "cancelled", "cancelled_on": now(request)})
    record = await _start_or_404(st, sid)
    return web.json_response(public(record))


async def retry_start(request: web.Request) -> web.Response:
    """A new start of the same flow (same params and options) for the failed contacts whose
    failure still stands (see :func:`bot.work.starts.standing_failures`)."""
    st = store(request)
    sid = request.match_info["uuid"]
    record = await _start_or_404(st, sid)
    targets, skipped = await standing_failures(st, record)
    if not targets and skipped:
        raise ApiError(
            409,
            "nothing_to_retry",
            "every contact that failed was started since by another start",
            {"skipped_by_reason": skipped},
        )
    if not targets:
        raise ApiError(409, "nothing_to_retry", "no contact of this start failed")
    if record["flow"] not in runtime(request).registry.flows:
        raise ApiError(404, "unknown_flow", f"no flow {record['flow']!r}")
    await _sendable(request, record["flow"])
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


IDEMPOTENCY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "The same key within 7 days answers the start it created (200).",
    "schema": {"type": "string"},
}

START_TARGETS = ("invalid_body", "invalid_urn", "unknown_flow", "unknown_group", "unknown_contact")
TEMPLATE_REFUSALS = ("template_not_found", "template_not_approved", "template_params_mismatch")
OPS = [
    Op(
        "GET",
        "/api/v1/starts",
        list_starts,
        "Starts, newest first",
        m.StartPage,
        query=m.StartQuery,
        errors=("bad_request",),
    ),
    Op(
        "POST",
        "/api/v1/starts",
        create_start,
        "Start a flow for contacts, URNs and groups (200: the same Idempotency-Key again)",
        m.Start,
        status=202,
        also=(200,),
        body=m.StartCreate,
        errors=START_TARGETS + TEMPLATE_REFUSALS,
        doc={"parameters": [IDEMPOTENCY]},
    ),
    Op(
        "POST",
        "/api/v1/starts/preview",
        preview_start,
        "How many a start would reach, and why the others not; starts nothing",
        m.Preview,
        body=m.StartCreate,
        errors=START_TARGETS,
    ),
    Op(
        "POST",
        "/api/v1/contacts/{uuid}/start",
        start_contact,
        "Start one contact in a flow (interrupting the run it is in): a start of one contact",
        m.Start,
        status=202,
        body=m.FlowStart,
        errors=("invalid_body", "unknown_contact", "unknown_flow", *TEMPLATE_REFUSALS),
    ),
    Op(
        "GET",
        "/api/v1/starts/{uuid}",
        get_start,
        "A start: its request, status and counts",
        m.Start,
        errors=("unknown_start",),
    ),
    Op(
        "GET",
        "/api/v1/starts/{uuid}/contacts",
        start_contacts,
        "A start's outcome per contact",
        m.OutcomePage,
        query=m.OutcomeQuery,
        errors=("unknown_start", "bad_request"),
    ),
    Op(
        "POST",
        "/api/v1/starts/{uuid}/cancel",
        cancel_start,
        "Cancel a start (the contacts it has started stay in their runs)",
        m.Start,
        errors=("unknown_start", "start_finished"),
    ),
    Op(
        "POST",
        "/api/v1/starts/{uuid}/retry",
        retry_start,
        "A new start of the same flow for the contacts whose failure still stands",
        m.Start,
        status=202,
        errors=("unknown_start", "unknown_flow", "nothing_to_retry", *TEMPLATE_REFUSALS),
    ),
]
