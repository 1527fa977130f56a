"""A start's message outcomes over time as a small SVG line chart, made on the server from the
start's outcome buckets (``Store.start_timeline``): one running total per outcome (sent,
delivered, read, failed), so the lines climb as the start goes out. Pure: no I/O, no request."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from markupsafe import Markup, escape

SERIES = (  # (outcome, colour): the legend's order
    ("sent", "#5f6b76"),
    ("delivered", "#1a73e8"),
    ("read", "#0b6e4f"),
    ("failed", "#b3261e"),
)
WIDTH, HEIGHT = 600, 180
LEFT, RIGHT, TOP, BOTTOM = 40, 10, 10, 28


def _clock(at: float) -> str:
    return time.strftime("%H:%M", time.gmtime(at))


def outcome_chart(
    timeline: Sequence[tuple[int, dict[str, int]]],
    translate: Callable[..., str],
    now: float | None = None,
) -> Markup:
    """The SVG of ``timeline`` (bucket start, counts per outcome), oldest first; the running
    totals drawn as steps, the x axis from the first bucket to the last (or ``now``), labelled
    in UTC. Empty markup when there is nothing to draw."""
    if not timeline:
        return Markup("")
    first = timeline[0][0]
    last = max(timeline[-1][0] + 60, int(now or 0))
    span = max(60, last - first)
    totals = {kind: 0 for kind, _ in SERIES}
    points: dict[str, list[tuple[float, float]]] = {kind: [] for kind, _ in SERIES}
    for at, counts in timeline:
        for kind, _ in SERIES:
            totals[kind] += counts.get(kind, 0)
            points[kind].append((at, totals[kind]))
    top = max(1, *totals.values())
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(at: float) -> float:
        return LEFT + inner_w * (at - first) / span

    def y(value: float) -> float:
        return TOP + inner_h * (1 - value / top)

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        f'role="img" aria-label="{escape(translate("Messages over time"))}">',
        f'<line x1="{LEFT}" y1="{TOP + inner_h}" x2="{WIDTH - RIGHT}" y2="{TOP + inner_h}" '
        'stroke="#d9dee3"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + inner_h}" stroke="#d9dee3"/>',
        f'<text x="{LEFT - 4}" y="{TOP + 10}" text-anchor="end" font-size="11">{top}</text>',
        f'<text x="{LEFT - 4}" y="{TOP + inner_h}" text-anchor="end" font-size="11">0</text>',
        f'<text x="{LEFT}" y="{HEIGHT - 8}" font-size="11">{_clock(first)}</text>',
        f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 8}" text-anchor="end" font-size="11">'
        f"{_clock(last)} UTC</text>",
    ]
    for kind, colour in SERIES:
        steps: list[str] = [f"{x(first):.1f},{y(0):.1f}"]
        previous = 0.0
        for when, total in points[kind]:
            steps.append(f"{x(when):.1f},{y(previous):.1f}")
            steps.append(f"{x(when):.1f},{y(total):.1f}")
            previous = total
        steps.append(f"{x(last):.1f},{y(previous):.1f}")
        label = escape(translate(kind.capitalize()))
        parts.append(
            f'<polyline class="series-{kind}" fill="none" stroke="{colour}" stroke-width="2" '
            f'points="{" ".join(steps)}"><title>{label}: {int(previous)}</title></polyline>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
