"""The flow diagram Studio draws: every node and exit is on it, with its counts and marks; what
came from the flow file is escaped; the layout is layered from the entry and does not change
from one drawing to the next."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from bot.api.studio.diagram import Counts, TemplateMark, draw
from bot.flow.files import Flow, load_folder, parse_flow

SVG = "{http://www.w3.org/2000/svg}"
ROOT = Path(__file__).resolve().parent.parent

SURVEY = """
name: "Survey <script>alert(1)</script>"
nodes:
  - id: hello
    send_message:
      text: "Hi <b>@contact.name</b> & welcome"
      template: {name: survey_open, body: ["@contact.name"]}
    next: ask
  - id: ask
    wait_for_reply:
      result: answer
      timeout: 10m
      on_timeout: {category: Silent, next: nudge}
      cases:
        - {has_any_word: [yes, si], category: "<Yes>", next: thanks}
      other: {category: Other, next: ask}
  - id: nudge
    send_message: {text: "still there?"}
    next: ask
  - id: thanks
    send_message: {text: "Thanks"}
"""


def survey() -> Flow:
    return parse_flow(Path("survey.yaml"), SURVEY.encode())


def nodes_of(tree: ET.Element) -> dict[str, ET.Element]:
    return {g.get("data-node", ""): g for g in tree.iter(f"{SVG}g") if g.get("data-node")}


def box(group: ET.Element) -> tuple[float, float, float, float]:
    rect = group.find(f"{SVG}rect")
    assert rect is not None
    x, y = float(rect.get("x", 0)), float(rect.get("y", 0))
    return x, y, x + float(rect.get("width", 0)), y + float(rect.get("height", 0))


def texts(element: ET.Element) -> list[str]:
    return [t.text or "" for t in element.iter(f"{SVG}text")]


def test_every_node_and_every_exit_is_drawn_with_its_edge() -> None:
    flows, problems = load_folder(ROOT / "flows")
    assert not problems and flows
    for flow in flows.values():
        tree = ET.fromstring(draw(flow))
        drawn = nodes_of(tree)
        assert set(drawn) == set(flow.nodes), flow.id
        edges = [(p.get("data-from"), p.get("data-exit")) for p in tree.iter(f"{SVG}path")]
        for node in flow.nodes.values():
            chips = [g.get("data-exit") for g in drawn[node.id].iter(f"{SVG}g")][1:]
            assert chips == list(node.exits()), node.id
            assert [e for n, e in edges if n == node.id] == list(node.exits()), node.id


def test_exits_show_their_category_and_counts_and_waits_their_contacts() -> None:
    counts = Counts(waiting={"ask": 1234}, exits={"ask": {"case0": 7, "timeout": 3}})
    tree = ET.fromstring(draw(survey(), counts))
    ask = nodes_of(tree)["ask"]
    chips = {g.get("data-exit"): texts(g) for g in ask.iter(f"{SVG}g") if g.get("data-exit")}
    assert chips == {
        "case0": ["<Yes>", "7"],
        "other": ["Other", "0"],
        "timeout": ["Silent", "3"],
    }
    assert "1,234 waiting" in texts(ask)
    assert not any("waiting" in t for t in texts(nodes_of(tree)["hello"]))  # not a wait


def test_counts_come_from_the_stats_document() -> None:
    stats = {
        "nodes": [
            {"id": "ask", "waiting": 5, "exits": [{"exit": "case0", "count": 2}]},
            {"id": "gone", "removed": True, "exits": [{"exit": "next", "count": 1}]},
        ]
    }
    counts = Counts.from_stats(stats)
    assert counts.waiting == {"ask": 5}
    assert counts.exits == {"ask": {"case0": 2}, "gone": {"next": 1}}


def test_what_came_from_the_file_is_escaped() -> None:
    svg = draw(
        survey(), templates={"hello": TemplateMark("survey_open", "en", "REJECTED", "<why>")}
    )
    assert "<script" not in svg and "<b>" not in svg and "<Yes>" not in svg
    assert "&lt;script&gt;" in svg and "&lt;Yes&gt;" in svg and "&lt;why&gt;" in svg
    tree = ET.fromstring(svg)  # well-formed: nothing broke out of a text or an attribute
    assert "Survey <script>alert(1)</script>" in (tree.findtext(f"{SVG}title") or "")


def test_template_nodes_are_marked_with_the_templates_status() -> None:
    marks = {"hello": TemplateMark("survey_open", "en", "PAUSED", "template_paused: paused")}
    hello = nodes_of(ET.fromstring(draw(survey(), templates=marks)))["hello"]
    mark = next(t for t in hello.iter(f"{SVG}text") if t.get("class") == "template")
    assert "survey_open: PAUSED" in (mark.text or "") and mark.get("fill") == "#b91c1c"
    assert "template_paused: paused" in (hello.findtext(f"{SVG}title") or "")
    approved = {"hello": TemplateMark("survey_open", "en", "APPROVED")}
    hello = nodes_of(ET.fromstring(draw(survey(), templates=approved)))["hello"]
    mark = next(t for t in hello.iter(f"{SVG}text") if t.get("class") == "template")
    assert mark.get("fill") == "#15803d"


def test_layers_follow_the_distance_from_the_entry_and_boxes_never_overlap() -> None:
    for flow in [survey(), *load_folder(ROOT / "flows")[0].values()]:
        drawn = {k: box(g) for k, g in nodes_of(ET.fromstring(draw(flow))).items()}
        distance = {flow.first: 0}
        todo = [flow.first]
        while todo:
            here = todo.pop(0)
            for target in flow.nodes[here].exits().values():
                if target and target not in distance:
                    distance[target] = distance[here] + 1
                    todo.append(target)
        for a in flow.nodes:
            for b in flow.nodes:
                if distance[a] < distance[b]:
                    assert drawn[a][3] < drawn[b][1], (flow.id, a, b)  # a is above b
                elif a < b and distance[a] == distance[b]:
                    left, right = sorted([drawn[a], drawn[b]])
                    assert left[2] < right[0], (flow.id, a, b)  # side by side


def test_a_loop_back_is_dashed_and_a_forward_exit_is_not() -> None:
    tree = ET.fromstring(draw(survey()))
    dash = {
        (p.get("data-from"), p.get("data-exit")): p.get("stroke-dasharray")
        for p in tree.iter(f"{SVG}path")
        if p.get("data-from")
    }
    assert dash[("nudge", "next")] == "5 3"  # back up to ask
    assert dash[("ask", "other")] == "5 3"  # to itself
    assert dash[("hello", "next")] == "none"


def test_an_exit_that_ends_the_flow_leads_to_an_end_mark() -> None:
    tree = ET.fromstring(draw(survey()))
    ends = [g.get("data-end") for g in tree.iter(f"{SVG}g") if g.get("data-end")]
    assert ends == ["thanks"]


def test_the_same_flow_draws_the_same_bytes() -> None:
    flows, _ = load_folder(ROOT / "flows")
    counts = Counts(waiting={"ask": 3}, exits={"open": {"next": 10}})
    for flow in flows.values():
        assert draw(flow, counts) == draw(flow, counts)
    assert re.search(r'viewBox="0 0 \d+(\.\d)? \d+(\.\d)?"', draw(survey()))


def test_the_diagrams_own_words_are_translated() -> None:
    spanish = {"waiting": "esperando", "end": "fin"}
    svg = draw(survey(), Counts(waiting={"ask": 2}), _=lambda s: spanish.get(s, s))
    assert "2 esperando" in svg and ">fin<" in svg
