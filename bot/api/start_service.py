"""What starting a flow means, once, for the JSON API (bot/api/starts.py) and Studio's pages:
read a :class:`~bot.api.models.StartCreate` into a resolved :class:`StartSpec` (flow, contacts,
groups, URNs, times checked), preview it, create it, cancel and retry a start, list and read
starts and their outcomes.

Each function takes the runtime and typed models and answers typed results or raises an
:class:`~bot.core.errors.ApiError`; none knows whether a JSON body or a form asked. See
docs/starts.md.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from bot.api import models as m
from bot.api.lookup import contacts_for_urns, groups_or_404, valid_urn
from bot.core.durations import parse_duration
from bot.core.errors import ApiError
from bot.engine.events import Start
from bot.engine.sprint import Session
from bot.store import Store
from bot.store.paging import decode_cursor, filtered_page
from bot.work.flowcheck import flow_template_problems, synced_channels
from bot.work.runtime import Runtime
from bot.work.starts import (
    FINISHED,
    PENDING,
    SKIP_REASONS,
    Starter,
    decide,
    explain,
    opening_problem,
    opening_template,
    public,
    standing_failures,
)
from channels.protocol import Channel, TemplatePreview

IDEMPOTENCY_TTL = 7 * 86400
START_MEMBER = re.compile(r"^[0-9.e+-]+\|[0-9a-f-]{36}$")

# A start's times (docs/starts.md): a send_at a little late goes now, older is a mistake (0,
# a date typed wrong); over a year ahead is too (unix milliseconds read as seconds: year 57,000).
SEND_AT_LATE = 3600
SEND_AT_AHEAD = 366 * 86400
SPREAD_MAX = 7 * 86400


@dataclass
class StartSpec:
    """A start request, resolved: the flow exists, contacts and groups are known, URNs are
    normalised, times are unix seconds within bounds."""

    flow: str
    contacts: list[str] = field(default_factory=list)
    groups: dict[str, str] = field(default_factory=dict)  # name -> id
    urns: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    restart_participants: bool = True
    exclude_active: bool = False
    send_at: float | None = None
    spread_over: int | None = None


def typed(record: dict[str, str]) -> m.Start:
    """A stored start as its typed answer (what :func:`public` shows, nothing added)."""
    return m.Start.model_validate(public(record))


def dump(answer: m.Answer) -> dict[str, Any]:
    """An answer as the JSON API writes it: the keys it was given, none defaulted in."""
    return answer.model_dump(mode="json", exclude_unset=True)


def parse_send_at(value: str | float | None) -> float | None:
    if value is None or isinstance(value, float | int):
        return None if value is None else float(value)
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, "invalid_body", "send_at: an ISO datetime or unix seconds") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


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


def known_flow(rt: Runtime, flow: str) -> str:
    flows = rt.registry.flows
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


async def resolve(rt: Runtime, spec: m.StartCreate) -> StartSpec:
    """The request checked and resolved, or the ApiError naming what is wrong."""
    try:
        spread_over = parse_duration(spec.spread_over) if spec.spread_over is not None else None
    except ValueError as exc:
        raise ApiError(400, "invalid_body", f"spread_over: {exc}") from None
    send_at = parse_send_at(spec.send_at)
    _within_bounds(send_at, spread_over, float(rt.clock.now()))
    flow = known_flow(rt, spec.flow)
    urns = list(dict.fromkeys(valid_urn(u) for u in spec.urns))
    groups = await groups_or_404(rt.store, spec.groups)
    return StartSpec(
        flow=flow,
        contacts=await _known_contacts(rt.store, spec.contacts),
        groups={g["name"]: g["id"] for g in groups},
        urns=urns,
        params=spec.params,
        restart_participants=spec.restart_participants,
        exclude_active=spec.exclude_active,
        send_at=send_at,
        spread_over=spread_over,
    )


def _starter(rt: Runtime) -> Starter:
    assert rt.worker is not None, "runtime not started"
    return rt.worker.starter


async def start_or_404(st: Store, sid: str) -> dict[str, str]:
    record = await st.start_record(sid)
    if record is None:
        raise ApiError(404, "unknown_start", f"no start {sid}")
    return record


async def _create(
    rt: Runtime,
    spec: StartSpec,
    targets: list[str],
    extra: dict[str, Any] | None = None,
    *,
    inline: bool = False,
) -> dict[str, str]:
    """Store the start (its named contacts as a set, groups as sources) and queue it; or,
    ``inline``, expand its one chunk now, so that its contact's start event is queued before
    the answer (and before whatever the contact sends next)."""
    st, at = rt.store, float(rt.clock.now())
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
    if not inline or await _starter(rt).step(sid) != "done":
        await _starter(rt).schedule(sid, spec.send_at)
    record = await st.start_record(sid)
    assert record is not None
    return record


async def template_channels(rt: Runtime) -> list[Channel]:
    """The channels whose synced templates a flow's templates are checked against."""
    return await synced_channels(rt.store, rt.channels.values())


async def sendable(rt: Runtime, flow_id: str) -> None:
    """422 when the flow opens with a template that cannot be sent: every contact would fail."""
    flow = rt.registry.flows[flow_id]
    problem = opening_problem(flow, await template_channels(rt))
    if problem is not None:
        code, message, details = problem
        raise ApiError(422, code, message, details)


async def create(
    rt: Runtime, spec: StartSpec, idempotency_key: str = "", *, by: str = ""
) -> tuple[m.Start, bool]:
    """The start made (True), or the one an earlier request with the same ``idempotency_key``
    made (False). ``by``: the Studio user who made it (the API records none)."""
    await sendable(rt, spec.flow)
    st = rt.store
    key = idempotency_key.strip()
    if key:
        existing = await st.idempotent_start(key)
        record = await st.start_record(existing) if existing else None
        if record is not None:
            return typed(record), False
    targets = list(spec.contacts)
    if spec.urns:
        found = await contacts_for_urns(st, spec.urns, float(rt.clock.now()), create=True)
        targets += [c for c in found if c]
    targets = list(dict.fromkeys(targets))
    if key:
        sid_claim = str(uuid.uuid4())
        if not await st.claim_idempotency(key, sid_claim, IDEMPOTENCY_TTL):
            existing = await st.idempotent_start(key)
            record = await st.start_record(existing) if existing else None
            if record is not None:
                return typed(record), False
    record = await _create(rt, spec, targets, {"by": by} if by else None)
    if key:
        await st.set_idempotency(key, record["uuid"], IDEMPOTENCY_TTL)
    return typed(record), True


async def sample_contacts(rt: Runtime, spec: StartSpec, count: int = 1) -> list[str]:
    """Up to ``count`` contacts the start names or holds in its groups (a preview's sample)."""
    found = list(spec.contacts[:count])
    if len(found) < count and spec.urns:
        found += [c for c in await rt.store.contact_ids_for_urns(spec.urns[:count]) if c]
    for gid in spec.groups.values():
        if len(found) >= count:
            break
        batches = cast(AsyncGenerator[list[str]], rt.store.group_members(gid, batch=count))
        async with aclosing(batches):  # one batch is enough: stop the scan there
            found += (await anext(batches, []))[: count - len(found)]
    return list(dict.fromkeys(found))[:count]


@dataclass(frozen=True)
class Opening:
    """The first message a start would send one contact, as that contact would see it: a
    template previewed by its channel (header, body with the parameters filled, buttons, why
    the provider would refuse it), else the text and its quick replies; ``error``: the code
    when it could not go at all (``no_route``, ``outside_24h_window``, an opted-out contact)."""

    contact: dict[str, Any]
    template: TemplatePreview | None = None
    text: str | None = None
    quick_replies: tuple[str, ...] = ()
    error: str | None = None
    channel: str | None = None


async def opening_for(rt: Runtime, spec: StartSpec) -> Opening | None:
    """What the start's flow sends first to a sample contact of the start (None: no contact to
    show, or the flow sends nothing before it waits). The engine is pure: its sprint for a
    fresh session is run and thrown away, nothing is stored or sent."""
    contact: dict[str, Any] | None = None
    sample = await sample_contacts(rt, spec)
    if sample:
        contact = await rt.store.get_contact(sample[0])
    elif spec.urns:
        contact = {"uuid": "", "urns": [spec.urns[0]], "name": "", "fields": {}}
    if contact is None:
        return None
    event = Start(flow=spec.flow, params=spec.params, at=float(rt.clock.now()))
    sprint = rt.engine.sprint(dict(contact), Session(), float(rt.clock.now()))
    rt.engine.apply(sprint, event)
    first = next((msg for msg in sprint.messages if msg.get("run")), None)
    if first is None:
        return None
    sent: dict[str, Any] = dict(first)
    channel = rt.channels.get(str(sent.get("channel") or ""))
    error = sent.get("error", {}).get("code") if sent.get("status") == "failed" else None
    block = sent.get("template")
    shown = channel.preview_template(block) if channel is not None and block else None
    return Opening(
        contact=contact,
        template=shown,
        text=sent.get("text") if shown is None else None,
        quick_replies=tuple(sent.get("quick_replies") or ()),
        error=error,
        channel=channel.name if channel is not None else None,
    )


async def preview(rt: Runtime, spec: StartSpec) -> m.Preview:
    """How many the start would reach and what each exclusion removes, counted under the
    names a start reports; starts nothing. Groups are streamed (SSCAN), a contact in several
    sources counted once."""
    st, engine = rt.store, rt.engine
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
    problems = flow_template_problems(flow, await template_channels(rt))
    return m.Preview(
        flow=spec.flow,
        counts=m.StartCounts(
            **counts,
            skipped=sum(skipped.values()),
            skipped_by_reason=skipped,
            failed_by_reason=failed,
        ),
        template=opening_template(flow),
        template_problems=[
            m.TemplateProblem(node=node.id, channel=why.channel, code=why.code, message=why.message)
            for node, why in problems
        ],
    )


async def start_one(rt: Runtime, cid: str, spec: m.FlowStart) -> m.Start:
    """Start (or restart) one known contact in a flow: a start like any other, of one contact;
    any run it is waiting in is interrupted."""
    start = StartSpec(flow=known_flow(rt, spec.flow), contacts=[cid], params=spec.params)
    await sendable(rt, start.flow)
    return typed(await _create(rt, start, [cid], inline=True))


async def get(rt: Runtime, sid: str) -> m.Start:
    return typed(await start_or_404(rt.store, sid))


async def page(rt: Runtime, q: m.StartQuery) -> tuple[list[m.Start], str | None]:
    """Newest first, filtered by ``flow`` and ``status``; the page and the next cursor."""
    st = rt.store
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
        records = await st.start_records([member.split("|", 1)[1] for member in members])
        for record in records:
            if (
                record is None
                or q.flow not in (None, record["flow"])
                or q.status not in (None, record["status"])
            ):
                out.append(None)
            else:
                out.append(public(record))
        return out

    found = await filtered_page(fetch, load_page, after, q.limit)
    return [m.Start.model_validate(item) for item in found["items"]], found["next"]


async def outcomes(
    rt: Runtime, sid: str, q: m.OutcomeQuery
) -> tuple[list[dict[str, str]], str | None]:
    """A page of the start's per-contact outcomes (failures with their words), the next cursor."""
    await start_or_404(rt.store, sid)
    cursor = 0
    if q.cursor:
        if not q.cursor.isdigit():
            raise ApiError(400, "bad_request", "cursor is not one this API gave")
        cursor = int(q.cursor)
    found, cursor = await rt.store.start_outcomes(sid, q.status, cursor, q.limit)
    return explain(found), str(cursor) if cursor else None


async def expected(rt: Runtime, sid: str) -> int:
    """How many contacts a start's sources hold now (a contact in two groups counted twice):
    what a running start's progress is measured against."""
    record = await start_or_404(rt.store, sid)
    return await rt.store.source_sizes(json.loads(record.get("sources") or "[]"))


async def cancel(rt: Runtime, sid: str) -> m.Start:
    """Cancel the start (again: no change); 409 once it finished otherwise."""
    st = rt.store
    record = await start_or_404(st, sid)
    if record["status"] in FINISHED and record["status"] != "cancelled":
        raise ApiError(409, "start_finished", f"the start is {record['status']} already")
    if record["status"] != "cancelled":
        await st.end_start(sid, {"status": "cancelled", "cancelled_on": float(rt.clock.now())})
    return typed(await start_or_404(st, sid))


async def retry(rt: Runtime, sid: str, *, by: str = "") -> m.Start:
    """A new start of the same flow (same params and options) for the failed contacts whose
    failure still stands (see :func:`bot.work.starts.standing_failures`)."""
    st = rt.store
    record = await start_or_404(st, sid)
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
    if record["flow"] not in rt.registry.flows:
        raise ApiError(404, "unknown_flow", f"no flow {record['flow']!r}")
    await sendable(rt, record["flow"])
    spec = StartSpec(
        flow=record["flow"],
        params=json.loads(record.get("params") or "{}"),
        restart_participants=True,
        exclude_active=record.get("exclude_active") == "1",
    )
    report = {
        "contacts": len(targets),
        "skipped": sum(skipped.values()),
        "skipped_by_reason": skipped,
    }
    extra = {"retry_of": sid, "retry": json.dumps(report), **({"by": by} if by else {})}
    new = await _create(rt, spec, targets, extra)
    return typed(new)
