"""Starts: the history newest first, with a progress bar that moves while a start runs; a start's
page with its counts, its messages over time (a small SVG chart made here), its failures grouped
by error with the reason in words, its failed contacts by name (paged), and Retry failed /
Cancel. Everything is read and done through :mod:`bot.api.start_service`, as the JSON API does."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from bot.api import models as m
from bot.api import start_service as svc
from bot.api.context import runtime
from bot.api.routes import query
from bot.api.studio.chart import outcome_chart
from bot.api.studio.i18n import translator
from bot.api.studio.pages.send import REASON_WORDS
from bot.api.studio.render import fragment, lang, page, redirect, user
from bot.work.runtime import Runtime
from bot.work.starts import FAILURES, FINISHED

routes = web.RouteTableDef()

PAGE = 25  # starts a page lists
FAILED_PAGE = 50  # failed contacts a start's page lists


def utc(at: float | str) -> str:
    """A time as pages show it (UTC, to the minute)."""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(float(at)))


def status_class(status: str) -> str:
    """The badge colour of a start's status."""
    return {"completed": "ok", "failed": "bad", "cancelled": "warn"}.get(status, "")


HELPERS = {"utc": utc, "status_class": status_class}


LATE_OUTCOMES = 60.0  # seconds a finished start's page keeps refreshing its counts


def running(start: m.Start) -> bool:
    """Still moving: expanding, or its first messages have no outcome yet."""
    return start.status not in FINISHED or start.sending > 0


async def progress(rt: Runtime, start: m.Start) -> dict[str, Any]:
    """How far the start is, 0..100: contacts decided and reached (their first message has an
    outcome) out of those its sources hold; a finished start with nothing sending is done."""
    c = start.counts
    if start.status in FINISHED:
        total = c.targeted
    else:
        total = max(c.targeted, await svc.expected(rt, start.uuid))
    done = c.targeted - start.sending
    percent = 100 if total == 0 and not running(start) else int(100 * done / total) if total else 0
    return {"percent": max(0, min(100, percent)), "done": done, "total": total}


async def _rows(rt: Runtime, starts: list[m.Start]) -> list[dict[str, Any]]:
    return [{"start": s, "progress": await progress(rt, s)} for s in starts]


async def _listing(request: web.Request) -> dict[str, Any]:
    rt = runtime(request)
    q = query(request, m.StartQuery)
    if "limit" not in request.query:
        q.limit = PAGE
    starts, after = await svc.page(rt, q)
    live_url = request.path.removesuffix("/table") + "/table"
    if request.query_string:
        live_url += "?" + request.query_string
    return {
        "rows": await _rows(rt, starts),
        "next": after,
        "flows": sorted(rt.registry.flows),
        "q": q,
        "live_url": live_url,
        "any_running": any(running(s) for s in starts),
        **HELPERS,
    }


@routes.get("/starts")
async def starts_page(request: web.Request) -> web.StreamResponse:
    return await page(request, "starts/index.html", **await _listing(request))


@routes.get("/starts/table")
async def starts_table(request: web.Request) -> web.StreamResponse:
    """The list as a fragment, refreshed while a start on it runs."""
    return fragment(request, "starts/_table.html", **await _listing(request))


async def _detail(request: web.Request) -> dict[str, Any]:
    rt = runtime(request)
    sid = request.match_info["uuid"]
    start = await svc.get(rt, sid)
    timeline = await rt.store.start_timeline(start.uuid)
    extra = start.model_extra or {}
    ended = extra.get("completed_on") or extra.get("cancelled_on")
    now = float(rt.clock.now())
    until = now if running(start) or not ended else float(ended)
    return {
        "start": start,
        "progress": await progress(rt, start),
        "running": running(start),
        # a provider's failure of a message it accepted comes a moment after the send's outcome
        # (a status webhook): the counts stay live for a while after the start is done
        "live": running(start) or not ended or now - float(ended) < LATE_OUTCOMES,
        "chart": outcome_chart(timeline, translator(lang(request)), now=until),
        "extra": extra,
        "reason_words": REASON_WORDS,
        **HELPERS,
    }


async def _failed(rt: Runtime, sid: str, cursor: str | None) -> dict[str, Any]:
    """A page of the start's failed contacts, by name, each with its reason; and the failures
    grouped by error code with the reason in words (the first words seen for a provider's code)."""
    outcomes, after = await svc.outcomes(
        rt, sid, m.OutcomeQuery(status="failed", limit=FAILED_PAGE, cursor=cursor)
    )
    contacts = await rt.store.contacts([o["contact"] for o in outcomes]) if outcomes else []
    rows = [
        {"outcome": o, "contact": c or {"uuid": o["contact"], "name": "", "urns": []}}
        for o, c in zip(outcomes, contacts, strict=True)
    ]
    return {"failed": rows, "failed_next": after}


def _by_code(start: m.Start, failed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Failures by error: the messages that failed by code, and the contacts failed before any
    message (unknown contact...), each with its reason in words."""
    words: dict[str, str] = {}
    for row in failed:
        o = row["outcome"]
        words.setdefault(o.get("reason", ""), o.get("message", ""))
    groups: dict[str, int] = dict(start.messages.failed_by_code)
    for row in failed:  # failed before any message was made (no such contact): this page's
        reason = row["outcome"].get("reason", "")
        if reason and reason not in start.messages.failed_by_code:
            groups[reason] = groups.get(reason, 0) + 1
    return [
        {"code": code, "count": n, "words": words.get(code) or FAILURES.get(code, "")}
        for code, n in sorted(groups.items(), key=lambda item: -item[1])
    ]


@routes.get("/starts/{uuid}")
async def start_page(request: web.Request) -> web.StreamResponse:
    detail = await _detail(request)
    start: m.Start = detail["start"]
    failed = await _failed(runtime(request), start.uuid, request.query.get("after") or None)
    return await page(
        request,
        "starts/show.html",
        **detail,
        **failed,
        by_code=_by_code(start, failed["failed"]),
    )


@routes.get("/starts/{uuid}/live")
async def start_live(request: web.Request) -> web.StreamResponse:
    """The start's status, counts, progress and chart, refreshed while it runs."""
    return fragment(request, "starts/_live.html", **await _detail(request))


@routes.post("/starts/{uuid}/cancel")
async def cancel(request: web.Request) -> web.StreamResponse:
    start = await svc.cancel(runtime(request), request.match_info["uuid"])
    _ = translator(lang(request))
    raise await redirect(request, f"/studio/starts/{start.uuid}", notice=_("Cancelled."))


@routes.post("/starts/{uuid}/retry")
async def retry(request: web.Request) -> web.StreamResponse:
    sid = request.match_info["uuid"]
    new = await svc.retry(runtime(request), sid, by=user(request).name)
    _ = translator(lang(request))
    count = new.retry.contacts if new.retry else 0
    notice = _("Retrying {count} failed contacts.", count=count)
    raise await redirect(request, f"/studio/starts/{new.uuid}", notice=notice)
