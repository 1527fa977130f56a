"""The starts API: start a flow for contacts, URNs and groups (or one contact); preview;
follow; cancel; retry.

A request is validated and stored, and answered 202 at once: the expansion of groups happens in
the background (:mod:`bot.work.starts`), so the answer never depends on a group's size. See
docs/starts.md.

The handlers only read the request and write the answer: what a start means is
:mod:`bot.api.start_service`, which Studio's pages call too.
"""

from __future__ import annotations

from aiohttp import web

from bot.api import models as m
from bot.api import start_service as svc
from bot.api.context import runtime, store
from bot.api.lookup import contact_or_404
from bot.api.routes import Op, body, query


async def create_start(request: web.Request) -> web.Response:
    rt = runtime(request)
    spec = await svc.resolve(rt, await body(request, m.StartCreate))
    start, made = await svc.create(rt, spec, request.headers.get("Idempotency-Key", ""))
    return web.json_response(svc.dump(start), status=202 if made else 200)


async def preview_start(request: web.Request) -> web.Response:
    rt = runtime(request)
    spec = await svc.resolve(rt, await body(request, m.StartCreate))
    return web.json_response(svc.dump(await svc.preview(rt, spec)))


async def start_contact(request: web.Request) -> web.Response:
    cid = (await contact_or_404(store(request), request.match_info["uuid"]))["uuid"]
    spec = await body(request, m.FlowStart)
    start = await svc.start_one(runtime(request), cid, spec)
    return web.json_response(svc.dump(start), status=202)


async def list_starts(request: web.Request) -> web.Response:
    starts, after = await svc.page(runtime(request), query(request, m.StartQuery))
    return web.json_response({"starts": [svc.dump(s) for s in starts], "next": after})


async def get_start(request: web.Request) -> web.Response:
    return web.json_response(svc.dump(await svc.get(runtime(request), request.match_info["uuid"])))


async def start_contacts(request: web.Request) -> web.Response:
    """Per-contact outcomes, ``?status=started|skipped|failed``, paged like every list."""
    sid = request.match_info["uuid"]
    # the start first: an unknown start is a 404 whatever the query says
    await svc.start_or_404(store(request), sid)
    found, after = await svc.outcomes(runtime(request), sid, query(request, m.OutcomeQuery))
    return web.json_response({"contacts": found, "next": after})


async def cancel_start(request: web.Request) -> web.Response:
    start = await svc.cancel(runtime(request), request.match_info["uuid"])
    return web.json_response(svc.dump(start))


async def retry_start(request: web.Request) -> web.Response:
    start = await svc.retry(runtime(request), request.match_info["uuid"])
    return web.json_response(svc.dump(start), status=202)


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
