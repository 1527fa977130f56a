"""Home: the channels and their health, the starts running now with their progress, and the
problems to look at (flows whose templates would be refused, starts that failed or had failures).

Everything here is read through the same code as the JSON API and ``/healthz``: a channel's
``health()`` (and its ``facts()``), a start as ``GET /api/v1/starts/{uuid}`` shows it
(:func:`bot.work.starts.public`), and the template check a start makes
(:func:`bot.work.flowcheck.flow_template_problems`). Starts are looked at among the newest
``RECENT`` only, so the page costs the same with a thousand starts in the history as with ten.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from bot.api.context import runtime, store
from bot.api.studio.render import NAV_KEY, fragment, page
from bot.work.flowcheck import flow_template_problems, synced_channels
from bot.work.starts import FAILED, FINISHED, public

routes = web.RouteTableDef()

RECENT = 50  # the newest starts Home looks at for running ones and failures


@dataclass(frozen=True, slots=True)
class ChannelCard:
    name: str
    type: str
    healthy: bool
    reason: str
    facts: list[tuple[str, str]]
    rate: str  # "80/s", or "" for no limit of ours
    pages: list[tuple[str, str]]  # (href, label) of the pages the channel adds to Studio


@dataclass(slots=True)
class Problems:
    templates: list[dict[str, str]] = field(default_factory=list)  # flow, node, channel, why
    starts: list[dict[str, Any]] = field(default_factory=list)  # public starts with failures

    def __len__(self) -> int:
        return len(self.templates) + len(self.starts)


def channel_cards(request: web.Request) -> list[ChannelCard]:
    nav: list[tuple[str, str]] = request.config_dict.get(NAV_KEY, [])
    cards = []
    for name, channel in sorted(runtime(request).channels.items()):
        health = channel.health()
        rate = channel.capabilities.rate
        prefix = f"/studio/channels/{name}/"
        cards.append(
            ChannelCard(
                name=name,
                type=channel.TYPE,
                healthy=health.get("status") == "ok",
                reason=str(health.get("reason", "")),
                facts=channel.facts(),
                rate=f"{rate.per_second:g}/s" if rate is not None else "",
                pages=[(href, label) for href, label in nav if href.startswith(prefix)],
            )
        )
    return cards


async def recent_starts(request: web.Request) -> list[dict[str, Any]]:
    """The newest starts, as the API shows them."""
    st = store(request)
    newest = await st.start_page(None, RECENT)
    records = await st.start_records([sid for sid, _ in newest])
    return [public(r) for r in records if r is not None]


def progress(start: dict[str, Any]) -> dict[str, Any]:
    """How far a start is: contacts decided out of those targeted, and its messages."""
    counts = start["counts"]
    done = counts["started"] + counts["skipped"] + counts["failed"]
    targeted = counts["targeted"]
    percent = min(100, round(100 * done / targeted)) if targeted else 0
    return {**start, "done": done, "percent": percent}


def running(starts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [progress(s) for s in starts if s["status"] not in FINISHED]


async def problems(request: web.Request, starts: list[dict[str, Any]]) -> Problems:
    rt = runtime(request)
    found = Problems()
    synced = await synced_channels(store(request), rt.channels.values())
    for flow_id, flow in sorted(rt.registry.flows.items()):
        for node, why in flow_template_problems(flow, synced):
            found.templates.append(
                {"flow": flow_id, "node": node.id, "channel": why.channel, "why": why.message}
            )
    for start in starts:
        failures = start["counts"]["failed"] + start["messages"]["failed"]
        if start["status"] == FAILED or failures:
            found.starts.append({**start, "failures": failures, "created": _at(start)})
    return found


def _at(start: dict[str, Any]) -> str:
    return datetime.fromtimestamp(start["created_on"], UTC).strftime("%Y-%m-%d %H:%M UTC")


@routes.get("/")
async def home(request: web.Request) -> web.StreamResponse:
    starts = await recent_starts(request)
    return await page(
        request,
        "home/index.html",
        channels=channel_cards(request),
        running=running(starts),
        problems=await problems(request, starts),
    )


@routes.get("/home/running")
async def running_fragment(request: web.Request) -> web.StreamResponse:
    """The running starts' progress, for the page's live refresh."""
    return fragment(request, "home/_running.html", running=running(await recent_starts(request)))
