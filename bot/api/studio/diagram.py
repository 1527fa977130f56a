"""A flow drawn as an SVG diagram, made on the server from the flow file, with its live counts.

Pure: a :class:`~bot.flow.files.Flow`, its :class:`Counts` and the :class:`TemplateMark` of its
template nodes in, an SVG string out; no I/O. Every text that came from a flow file, the stats or
the provider is escaped here: the page inserts the string as it is.

The layout is deterministic (the same flow and counts give the same bytes) and made for flows of
a few dozen nodes, top to bottom so that it reads on a phone:

- layers by distance from the entry node (breadth first over the exits); an exit that ends the
  flow leads to a small *end* mark one layer below its node;
- an edge that skips layers passes through a placeholder in each layer between, so that nodes
  make room for it instead of being drawn over;
- the order inside a layer comes from a few sweeps of barycentres (of the neighbours above, then
  below), ties broken by file order; each node is then placed under its parents where it can;
- an edge to the same or an earlier layer (a loop back, e.g. "ask again") runs up a lane on the
  right and comes into its node from above, like the others;
- each node lists its exits along its bottom, as chips with the category and the count through
  it; an edge leaves from its chip. A wait shows how many contacts wait there, a template node
  the template's status on the synced templates.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from html import escape
from itertools import pairwise
from typing import Any

from bot.engine.stats import exit_category
from bot.flow.files import Flow
from bot.flow.nodes.base import Node

MIN_W = 200.0  # a node's width, at least
CHIP_W = 92.0  # room for one exit chip
NODE_H = 100.0
HEAD_H = 22.0
CHIP_H = 32.0
END_W, END_H = 36.0, 22.0
DUMMY_W = 14.0
GAP = 28.0  # between boxes of one layer
LAYER_GAP = 64.0  # between layers: where edges bend
LANE_GAP = 14.0  # between the lanes of edges going back up
MARGIN = 16.0
CHAR_W = 6.4  # an average character at 11px, to shorten texts that would not fit

KIND_COLOURS = {
    "send_message": "#2563eb",
    "wait_for_reply": "#b45309",
    "split": "#7c3aed",
    "call_webhook": "#0e7490",
    "enter_flow": "#047857",
}
OTHER_COLOUR = "#475569"
STATUS_COLOURS = {"APPROVED": "#15803d", "PENDING": "#b45309", "IN_APPEAL": "#b45309"}
BAD_COLOUR = "#b91c1c"
UNKNOWN_COLOUR = "#64748b"

# what a node shows under its id: the first of these fields its kind has
SUMMARY_FIELDS = ("text", "on", "url", "flow", "groups", "name", "channel")


@dataclass(frozen=True)
class Counts:
    """What to show on the diagram: contacts waiting at each node, runs through each exit."""

    waiting: Mapping[str, int] = field(default_factory=dict)
    exits: Mapping[str, Mapping[str, int]] = field(default_factory=dict)  # node -> exit -> n

    @classmethod
    def from_stats(cls, stats: Mapping[str, Any]) -> Counts:
        """From a flow's stats document (:func:`bot.engine.stats.present`)."""
        nodes = stats.get("nodes", [])
        return cls(
            waiting={n["id"]: int(n["waiting"]) for n in nodes if "waiting" in n},
            exits={n["id"]: {e["exit"]: int(e["count"]) for e in n["exits"]} for n in nodes},
        )


@dataclass(frozen=True)
class TemplateMark:
    """A template node's template as the synced templates have it."""

    name: str
    language: str
    status: str  # the provider's (APPROVED, PENDING, REJECTED, PAUSED, ...); "" if not synced
    problem: str | None = None  # why a send would be refused, in words


@dataclass
class _Box:
    """A node, an end mark or an edge's placeholder, in one layer."""

    key: str
    layer: int
    width: float
    height: float
    node: Node | None = None
    x: float = 0.0  # left
    y: float = 0.0  # top

    @property
    def cx(self) -> float:
        return self.x + self.width / 2

    @property
    def bottom(self) -> float:
        return self.y + self.height


@dataclass
class _Edge:
    source: str  # node id
    exit: str
    port: int  # the exit's index on its node
    target: str  # a box key: a node id or an end mark
    via: list[str] = field(default_factory=list)  # placeholders, top to bottom
    back: bool = False
    count: int = 0


def _n(value: float) -> str:
    """A coordinate, short and stable."""
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _fit(text: str, width: float) -> str:
    """``text`` on one line, shortened with an ellipsis to about ``width`` pixels."""
    line = " ".join(text.split())
    most = max(int(width / CHAR_W), 1)
    return line if len(line) <= most else line[: most - 1].rstrip() + "…"


def _summary(node: Node) -> str:
    template = getattr(node.body, "template", None)
    for name in SUMMARY_FIELDS:
        value = getattr(node.body, name, None)
        if value:
            return ", ".join(map(str, value)) if isinstance(value, list) else str(value)
    if template is not None:
        return str(template.name)
    result = getattr(node.body, "result", None)
    return f"@results.{result}" if result else ""


def _layers(flow: Flow) -> dict[str, int]:
    """Each node's distance from the entry (unreachable ones, if any, below all)."""
    layer = {flow.first: 0}
    todo = [flow.first]
    while todo:
        following = []
        for node_id in todo:
            for target in flow.nodes[node_id].exits().values():
                if target is not None and target in flow.nodes and target not in layer:
                    layer[target] = layer[node_id] + 1
                    following.append(target)
        todo = following
    deepest = max(layer.values())
    return {n: layer.get(n, deepest + 1) for n in flow.nodes}


class _Layout:
    def __init__(self, flow: Flow, counts: Counts) -> None:
        self.boxes: dict[str, _Box] = {}
        self.edges: list[_Edge] = []
        self.rows: dict[int, list[str]] = {}
        layer = _layers(flow)
        for node in flow.nodes.values():
            width = max(MIN_W, CHIP_W * len(node.exits()))
            self._add(_Box(node.id, layer[node.id], width, NODE_H, node))
        for node in flow.nodes.values():
            counted = counts.exits.get(node.id, {})
            for port, (exit_name, target) in enumerate(node.exits().items()):
                if target is None or target not in flow.nodes:
                    target = f"end:{node.id}"
                    if target not in self.boxes:
                        self._add(_Box(target, layer[node.id] + 1, END_W, END_H))
                edge = _Edge(node.id, exit_name, port, target, count=counted.get(exit_name, 0))
                top, bottom = layer[node.id], self.boxes[target].layer
                edge.back = bottom <= top
                for between in range(top + 1, bottom) if not edge.back else ():
                    key = f"via:{len(self.edges)}:{between}"
                    self._add(_Box(key, between, DUMMY_W, NODE_H))
                    edge.via.append(key)
                self.edges.append(edge)
        self._order()
        self._place()

    def _add(self, box: _Box) -> None:
        self.boxes[box.key] = box
        self.rows.setdefault(box.layer, []).append(box.key)

    def _links(self) -> list[tuple[str, float, str]]:
        """(upper box, where on it the link leaves: 0..1, lower box) of every forward segment."""
        links = []
        for edge in self.edges:
            if edge.back:
                continue
            chain = [edge.source, *edge.via, edge.target]
            node = self.boxes[edge.source].node
            ports = len(node.exits()) if node is not None else 1
            fractions = [(edge.port + 0.5) / ports] + [0.5] * (len(chain) - 2)
            links += [(a, f, b) for a, f, b in zip(chain, fractions, chain[1:], strict=False)]
        return links

    def _order(self) -> None:
        links = self._links()
        depth = max(self.rows)
        for downwards in (True, False, True, False, True):
            layers = range(1, depth + 1) if downwards else range(depth - 1, -1, -1)
            for layer in layers:
                position = {key: i for row in self.rows.values() for i, key in enumerate(row)}
                pulls: dict[str, list[float]] = {}
                for upper, fraction, lower in links:
                    if downwards and self.boxes[lower].layer == layer:
                        pulls.setdefault(lower, []).append(position[upper] + fraction)
                    elif not downwards and self.boxes[upper].layer == layer:
                        pulls.setdefault(upper, []).append(position[lower] + 0.5)
                row = self.rows[layer]
                weight = {
                    key: sum(pulls[key]) / len(pulls[key]) if key in pulls else i + 0.5
                    for i, key in enumerate(row)
                }
                self.rows[layer] = sorted(row, key=lambda k: (weight[k], row.index(k)))

    def _place(self) -> None:
        parents: dict[str, list[tuple[str, float]]] = {}
        for upper, fraction, lower in self._links():
            parents.setdefault(lower, []).append((upper, fraction))
        for layer in sorted(self.rows):
            y = MARGIN + layer * (NODE_H + LAYER_GAP)
            right = MARGIN - GAP
            for key in self.rows[layer]:
                box = self.boxes[key]
                box.y = y
                wanted = [
                    self.boxes[p].x + self.boxes[p].width * f for p, f in parents.get(key, [])
                ]
                left = right + GAP
                if wanted:
                    left = max(left, sum(wanted) / len(wanted) - box.width / 2)
                box.x = left
                right = left + box.width
        shift = MARGIN - min(b.x for b in self.boxes.values())
        for box in self.boxes.values():
            box.x += shift

    def port(self, edge: _Edge) -> tuple[float, float]:
        box = self.boxes[edge.source]
        node = box.node
        ports = len(node.exits()) if node is not None else 1
        return box.x + box.width * (edge.port + 0.5) / ports, box.bottom


class _Svg:
    """The drawing's text, element by element; every value goes through ``escape``."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def open(self, tag: str, **attrs: str | float) -> None:
        self.parts.append(f"<{tag}{_attrs(attrs)}>")

    def close(self, tag: str) -> None:
        self.parts.append(f"</{tag}>")

    def empty(self, tag: str, **attrs: str | float) -> None:
        self.parts.append(f"<{tag}{_attrs(attrs)}/>")

    def text(self, content: str, **attrs: str | float) -> None:
        self.parts.append(f"<text{_attrs(attrs)}>{escape(content)}</text>")

    def title(self, content: str) -> None:
        self.parts.append(f"<title>{escape(content)}</title>")


def _attrs(attrs: Mapping[str, str | float]) -> str:
    out = []
    for name, value in attrs.items():
        text = _n(value) if isinstance(value, float | int) else value
        out.append(f' {name.rstrip("_").replace("_", "-")}="{escape(text, quote=True)}"')
    return "".join(out)


def _identity(text: str) -> str:
    return text


def draw(
    flow: Flow,
    counts: Counts | None = None,
    templates: Mapping[str, TemplateMark] | None = None,
    _: Callable[[str], str] = _identity,
) -> str:
    """The flow as an SVG document (a string to put in a page as it is).

    ``templates``: node id -> its template's mark, for the nodes that send a template.
    ``_`` translates the diagram's own words ("waiting", "end", ...)."""
    counts = counts or Counts()
    layout = _Layout(flow, counts)
    boxes = layout.boxes.values()
    lanes = sum(1 for e in layout.edges if e.back)
    right = max(b.x + b.width for b in boxes)
    width = right + LANE_GAP * lanes + MARGIN + (GAP if lanes else 0)
    height = max(b.bottom for b in boxes) + MARGIN
    svg = _Svg()
    svg.open(
        "svg",
        xmlns="http://www.w3.org/2000/svg",
        viewBox=f"0 0 {_n(width)} {_n(height)}",
        width=width,
        height=height,
        role="img",
        font_family="system-ui, sans-serif",
        font_size=11,
        class_="flow-diagram",
    )
    svg.title(f"{flow.name} ({flow.id}): {len(flow.nodes)} nodes")
    svg.open("defs")
    svg.open(
        "marker",
        id="flow-arrow",
        viewBox="0 0 10 10",
        refX=9,
        refY=5,
        markerWidth=8,
        markerHeight=8,
        markerUnits="userSpaceOnUse",
        orient="auto-start-reverse",
    )
    svg.empty("path", d="M0,0 L10,5 L0,10 z", fill="#334155")
    svg.close("marker")
    svg.close("defs")
    _edges(svg, layout, right + GAP)
    for box in boxes:
        if box.node is not None:
            mark = (templates or {}).get(box.node.id)
            _node(svg, box, box.node, counts, layout, mark, _)
        elif box.key.startswith("end:"):
            svg.open("g", class_="end", data_end=box.key[4:])
            svg.empty(
                "rect",
                x=box.x,
                y=box.y,
                width=box.width,
                height=box.height,
                rx=11,
                fill="#f1f5f9",
                stroke="#94a3b8",
            )
            svg.text(_("end"), x=box.cx, y=box.y + 15, text_anchor="middle", fill="#475569")
            svg.close("g")
    svg.close("svg")
    return "".join(svg.parts)


def _edges(svg: _Svg, layout: _Layout, lane_x: float) -> None:
    busiest = max((e.count for e in layout.edges), default=0)
    arriving: dict[str, list[_Edge]] = {}
    for edge in layout.edges:
        arriving.setdefault(edge.target, []).append(edge)
    ends: dict[int, tuple[float, float]] = {}
    for target, edges in arriving.items():
        box = layout.boxes[target]
        ordered = sorted(edges, key=lambda e: (layout.port(e)[0], e.source, e.port))
        spread = box.width * 0.5
        for i, edge in enumerate(ordered):
            offset = spread * ((i + 0.5) / len(ordered) - 0.5) if len(ordered) > 1 else 0.0
            ends[id(edge)] = (box.cx + offset, box.y)
    lane = 0
    for edge in layout.edges:
        x0, y0 = layout.port(edge)
        x1, y1 = ends[id(edge)]
        if edge.back:
            lane += 1
            x = lane_x + LANE_GAP * (lane - 1)
            below, above = y0 + 8 + 3 * (lane % 4), y1 - 10 - 3 * (lane % 4)
            d = (
                f"M{_n(x0)},{_n(y0)} L{_n(x0)},{_n(below)} L{_n(x)},{_n(below)} "
                f"L{_n(x)},{_n(above)} L{_n(x1)},{_n(above)} L{_n(x1)},{_n(y1)}"
            )
        else:
            points = [(x0, y0)]
            for key in edge.via:
                box = layout.boxes[key]
                points += [(box.cx, box.y), (box.cx, box.bottom)]
            points.append((x1, y1))
            d = f"M{_n(x0)},{_n(y0)}"
            for (ax, ay), (bx, by) in pairwise(points):
                if ax == bx:
                    d += f" L{_n(bx)},{_n(by)}"
                else:
                    bend = (by - ay) / 2
                    d += f" C{_n(ax)},{_n(ay + bend)} {_n(bx)},{_n(by - bend)} {_n(bx)},{_n(by)}"
        stroke = 1.25 + (2.5 * edge.count / busiest if busiest else 0.0)
        svg.empty(
            "path",
            d=d,
            fill="none",
            stroke="#334155" if edge.count else "#94a3b8",
            stroke_width=round(stroke, 2),
            stroke_dasharray="5 3" if edge.back else "none",
            marker_end="url(#flow-arrow)",
            class_="edge",
            data_from=edge.source,
            data_exit=edge.exit,
        )


def _node(
    svg: _Svg,
    box: _Box,
    node: Node,
    counts: Counts,
    layout: _Layout,
    mark: TemplateMark | None,
    _: Callable[[str], str],
) -> None:
    colour = KIND_COLOURS.get(node.kind, OTHER_COLOUR)
    waiting = counts.waiting.get(node.id) if node.body.WAITS else None
    tip = [f"{node.id} ({node.kind})", _summary(node)]
    if waiting is not None:
        tip.append(f"{waiting} {_('waiting')}")
    if mark is not None:
        tip.append(f"{_('template')} {mark.name} ({mark.language}): {mark.status or '?'}")
        if mark.problem:
            tip.append(mark.problem)
    svg.open("g", class_=f"node kind-{node.kind}", data_node=node.id, id=f"node-{node.id}")
    svg.title("\n".join(t for t in tip if t))
    x, y, w = box.x, box.y, box.width
    svg.empty("rect", x=x, y=y, width=w, height=NODE_H, rx=6, fill="#ffffff", stroke=colour)
    svg.empty("rect", x=x, y=y, width=w, height=HEAD_H, rx=6, fill=colour)
    svg.empty("rect", x=x, y=y + HEAD_H - 6, width=w, height=6, fill=colour)
    kind = _fit(node.kind, w / 2 - 8)
    svg.text(
        _fit(node.id, (w - len(kind) * CHAR_W - 24) * 0.85),  # bold: wider letters
        x=x + 8,
        y=y + 15,
        fill="#ffffff",
        font_weight="bold",
    )
    svg.text(kind, x=x + w - 8, y=y + 15, fill="#ffffff", text_anchor="end", font_size=10)
    svg.text(_fit(_summary(node), w - 16), x=x + 8, y=y + HEAD_H + 16, fill="#0f172a")
    badge_y = y + HEAD_H + 34
    if waiting is not None:
        svg.text(
            f"{waiting:,} {_('waiting')}",
            x=x + 8,
            y=badge_y,
            fill=colour if waiting else UNKNOWN_COLOUR,
            font_weight="bold",
            class_="waiting",
        )
    if mark is not None:
        status = mark.status or _("not synced")
        tone = STATUS_COLOURS.get(mark.status, BAD_COLOUR if mark.status else UNKNOWN_COLOUR)
        if mark.problem:
            tone = BAD_COLOUR
        svg.text(
            _fit(f"▣ {mark.name}: {status}", w / 2 if waiting is not None else w - 16),
            x=x + w - 8 if waiting is not None else x + 8,
            y=badge_y,
            fill=tone,
            text_anchor="end" if waiting is not None else "start",
            class_="template",
        )
    exits = list(node.exits())
    chip_w = w / len(exits)
    chip_y = y + NODE_H - CHIP_H
    svg.empty("line", x1=x, y1=chip_y, x2=x + w, y2=chip_y, stroke="#cbd5e1")
    for i, exit_name in enumerate(exits):
        cx = x + chip_w * (i + 0.5)
        if i:
            edge_x = x + chip_w * i
            svg.empty("line", x1=edge_x, y1=chip_y, x2=edge_x, y2=y + NODE_H, stroke="#cbd5e1")
        label = exit_category(node, exit_name) or _(exit_name)
        count = counts.exits.get(node.id, {}).get(exit_name, 0)
        svg.open("g", class_="exit", data_exit=exit_name)
        svg.title(f"{label}: {count}")
        svg.text(_fit(label, chip_w - 8), x=cx, y=chip_y + 13, text_anchor="middle", fill="#334155")
        svg.text(
            f"{count:,}",
            x=cx,
            y=chip_y + 26,
            text_anchor="middle",
            font_weight="bold",
            fill="#0f172a",
            class_="count",
        )
        svg.close("g")
    svg.close("g")
