"""``chasqui check``: every problem a flow file can have names its file, line, node and field.

Each case writes a small flow to a temporary folder, loads the folder the way ``chasqui check``
and the server do, and compares the problems exactly: a wrong line number or a vague message is
a bug for a flow author. Reloading (``FlowRegistry.reload``) is tested at the end.
"""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path
from typing import Any

import pytest

from bot.core.config import load_config
from bot.engine.flows import FlowRegistry
from bot.engine.sprint import Limits, Route
from bot.flow.files import FlowError, Problem, check_references, load_folder, parse_flow

CHANNELS = {"console", "whatsapp"}

SHIPPED = Path(__file__).resolve().parent.parent / "flows"


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def problems_of(folder: Path, text: str, name: str = "f") -> tuple[Path, list[Problem]]:
    path = write(folder, name, text)
    flows, problems = load_folder(folder, CHANNELS)
    assert name not in flows
    return path, problems


def only(problems: list[Problem]) -> Problem:
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


# Flows with exactly one problem: (flow text, line, message, node, field).
ONE_PROBLEM = [
    pytest.param(
        """\
        nodes:
          - id: route
            split:
              on: "@fields.tier"
              cases:
                - {has_any_word: [gold], category: Gold}
            next: missing
        """,
        7,  # the `other` exit falls back to the node's `next`: the problem is on that line
        "unknown node 'missing'",
        "nodes[0] (route)",
        "next",
        id="unknown_next_of_a_split_without_other_next",
    ),
    pytest.param(
        """\
        nodes:
          - id: hook
            call_webhook: {url: "https://example.com/x"}
            next: done
            on_failure: gone
          - id: done
            send_message: {text: ok}
        """,
        5,
        "unknown node 'gone'",
        "nodes[0] (hook)",
        "on_failure",
        id="unknown_on_failure_target",
    ),
    pytest.param(
        """\
        nodes:
          - id: a
            send_message: {text: hi}

          - id: orphan
            send_message: {text: bye}
        """,
        5,
        "unreachable: no exit leads here",
        "nodes[1] (orphan)",
        None,
        id="unreachable_node",
    ),
    pytest.param(
        """\
        nodes:
          - id: a
            send_message: {text: hi}
            next: b
          - id: b
            set_result: {name: r, value: x}
            next: a
        """,
        2,
        "cycle with no wait_for_reply: a -> b -> a",
        "nodes[0] (a)",
        None,
        id="cycle_without_a_wait_is_reported_once",
    ),
    pytest.param(
        """\
        nodes:
          - id: a
            send_message: {text: hi}
            next: b
          - id: b
            send_message: {text: again}
          - id: a
            send_message: {text: bye}
        """,
        7,
        "duplicate id 'a' (first at nodes[0])",
        "nodes[2] (a)",
        "id",
        id="duplicate_id",
    ),
    pytest.param(
        """\
        nodes:
          - id: "has space"
            send_message: {text: hi}
        """,
        2,
        "id: 'has space' is not a valid node id (letters, digits, _ -)",
        "nodes[0]",
        None,
        id="invalid_node_id",
    ),
    pytest.param(
        """\
        nodes:
          - id: switch
            update_contact:
              channel: telegram
        """,
        4,
        "unknown channel 'telegram' (channels: console, whatsapp)",
        "nodes[0] (switch)",
        "update_contact.channel",
        id="unknown_channel",
    ),
    pytest.param(
        """\
        nodes:
          - id: greet
            send_message:
              text: "Hola @(upper(contact.name)"
        """,
        4,
        "invalid expression: unterminated @( expression (at 5)",
        "nodes[0] (greet)",
        "send_message.text",
        id="invalid_expression",
    ),
    pytest.param(
        """\
        nodes:
          - id: ask
            wait_for_reply:
              cases:
                - {has_text: true, category: Any}
                - {has_any_wrd: [si], category: Yes}
        """,
        6,
        "unknown case test 'has_any_wrd' (did you mean 'has_any_word'?)",
        "nodes[0] (ask)",
        "wait_for_reply.cases[1]",
        id="unknown_case_test_with_a_hint",
    ),
    pytest.param(
        """\
        nodes:
          - id: ask
            wait_for_reply:
              cases:
                - {has_text: true}
        """,
        5,
        "required, but missing",
        "nodes[0] (ask)",
        "wait_for_reply.cases[0].category",
        id="case_without_category",
    ),
    pytest.param(
        """\
        nodes:
          - id: ask
            wait_for_reply:
              result: r
              timeout: 3 days
        """,
        5,
        "bad duration '3 days': write e.g. 30s, 5m, 24h, 3d",
        "nodes[0] (ask)",
        "wait_for_reply.timeout",
        id="bad_timeout",
    ),
    pytest.param(
        """\
        nodes:
          - id: hook
            call_webhook:
              url: https://example.com
              timeout: 2m
        """,
        5,
        "a webhook timeout longer than 30s would hold the contact too long",
        "nodes[0] (hook)",
        "call_webhook.timeout",
        id="webhook_timeout_over_the_limit",
    ),
    pytest.param(
        """\
        name: x
        expire_after: soon
        nodes:
          - id: a
            send_message: {text: hi}
        """,
        2,
        "bad duration 'soon': write e.g. 30s, 5m, 24h, 3d",
        None,
        "expire_after",
        id="bad_expire_after",
    ),
    pytest.param(
        """\
        nodes:
          - id: a
            next: a
        """,
        2,
        "a node has exactly one kind, found none",
        "nodes[0] (a)",
        None,
        id="node_without_a_kind",
    ),
    pytest.param(
        """\
        nodes:
          - id: a
            send_message: {text: hi}
            add_to_group: VIP
        """,
        2,
        "a node has exactly one kind, found ['send_message', 'add_to_group']",
        "nodes[0] (a)",
        None,
        id="two_kinds_in_one_node",
    ),
    pytest.param(
        """\
        nodes:
          - id: a
            send_message:
              text: hi
              quick_reply: [x]
        """,
        5,
        "unknown key",
        "nodes[0] (a)",
        "send_message.quick_reply",
        id="unknown_key_in_a_node_body",
    ),
    pytest.param(
        """\
        nodes:
          - id: a
            add_to_group: VIP
            on_failure: a
        """,
        4,
        "add_to_group cannot fail, on_failure does not apply",
        "nodes[0] (a)",
        "on_failure",
        id="on_failure_on_a_node_that_cannot_fail",
    ),
]


@pytest.mark.parametrize(("text", "line", "message", "node", "field"), ONE_PROBLEM)
def test_a_flow_with_one_problem_names_its_line_node_and_field(
    tmp_path: Path, text: str, line: int, message: str, node: str | None, field: str | None
) -> None:
    path, problems = problems_of(tmp_path, text)
    assert only(problems) == Problem(str(path), line, message, node, field)


# -- exits to nodes that do not exist -----------------------------------------------------------


def test_unknown_next_is_reported_once_at_its_line(tmp_path: Path) -> None:
    path, problems = problems_of(
        tmp_path,
        """
        name: x
        nodes:
          - id: a
            send_message: {text: hi}
            next: nope
        """,
    )
    # send_message can fail; its failure exit defaults to `next` and must not repeat the problem
    assert only(problems) == Problem(str(path), 5, "unknown node 'nope'", "nodes[0] (a)", "next")
    assert str(problems[0]) == f"{path}:5: nodes[0] (a): next: unknown node 'nope'"


def test_unknown_targets_of_cases_other_and_timeout(tmp_path: Path) -> None:
    path, problems = problems_of(
        tmp_path,
        """
        nodes:
          - id: ask
            wait_for_reply:
              timeout: 1h
              cases:
                - {has_text: true, category: T, next: ok}
                - {has_number: true, category: N, next: zz}
              other: {category: O, next: yy}
              on_timeout: {category: None, next: xx}
          - id: ok
            send_message: {text: fine}
        """,
    )
    where = "nodes[0] (ask)"
    assert problems == [
        Problem(str(path), 7, "unknown node 'zz'", where, "wait_for_reply.cases[1].next"),
        Problem(str(path), 8, "unknown node 'yy'", where, "wait_for_reply.other.next"),
        Problem(str(path), 9, "unknown node 'xx'", where, "wait_for_reply.on_timeout.next"),
    ]


# -- graph shape --------------------------------------------------------------------------------


def test_a_cycle_through_a_wait_is_fine(tmp_path: Path) -> None:
    write(
        tmp_path,
        "f",
        """
        nodes:
          - id: a
            send_message: {text: hi}
            next: ask
          - id: ask
            wait_for_reply:
              cases: [{has_text: true, category: T, next: a}]
        """,
    )
    flows, problems = load_folder(tmp_path, CHANNELS)
    assert problems == []
    assert list(flows["f"].nodes) == ["a", "ask"]


# -- node bodies --------------------------------------------------------------------------------


def test_channels_are_not_checked_without_a_config(tmp_path: Path) -> None:
    text = "nodes:\n  - id: s\n    update_contact: {channel: telegram}\n"
    flow = parse_flow(tmp_path / "f.yaml", text.encode(), channels=None)
    assert flow.nodes["s"].kind == "update_contact"


def test_invalid_expression_in_a_template_parameter(tmp_path: Path) -> None:
    _, problems = problems_of(
        tmp_path,
        """
        nodes:
          - id: open
            send_message:
              template:
                name: t
                body:
                  - "@contact.first_name"
                  - "@(fields.x"
        """,
    )
    p = only(problems)
    assert (p.line, p.node, p.field) == (8, "nodes[0] (open)", "send_message.template.body[1]")
    assert p.message.startswith("invalid expression: unterminated @(")


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("{has_number_between: [5, 1], category: C}",
         "has_number_between: min 5 is greater than max 1"),
        ("{has_number_gt: [1, 2], category: C}", "has_number_gt takes 1 number, got 2"),
        ("{has_email: [x], category: C}", "has_email takes no arguments, got 1"),
        ("{has_any_word: [], category: C}", "has_any_word takes at least 1 word, got 0"),
        ("{has_pattern: '(', category: C}",
         "has_pattern: invalid regex: missing ), unterminated subpattern at position 0"),
        ("{has_text: true, has_email: true, category: C}",
         "a case needs exactly one case test key, found ['has_text', 'has_email']"),
    ],
)  # fmt: skip
def test_bad_case_arguments(tmp_path: Path, case: str, message: str) -> None:
    path, problems = problems_of(
        tmp_path,
        f"""
        nodes:
          - id: ask
            split:
              on: "@input.text"
              cases:
                - {case}
        """,
    )
    assert only(problems) == Problem(str(path), 6, message, "nodes[0] (ask)", "split.cases[0]")


def test_unknown_node_kind_with_a_hint(tmp_path: Path) -> None:
    path, problems = problems_of(
        tmp_path,
        """
        nodes:
          - id: a
            send_mesage: {text: hi}
        """,
    )
    p = only(problems)  # and not a second "no kind" problem for the same mistake
    assert (p.file, p.line, p.node) == (str(path), 3, "nodes[0] (a)")
    assert p.message.startswith("unknown key 'send_mesage' (did you mean 'send_message'?)")
    assert "node kinds: send_message, update_contact" in p.message


# -- the file as a whole ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("name: x\n", 1, "required, but missing"),
        ("name: x\nnodes: []\n", 2, "List should have at least 1 item after validation, not 0"),
        (
            "name: x\nnodes:\n  - id: a\n    send_message: {text: hi}\nauthor: me\n",
            5,
            "unknown key",
        ),
    ],
)
def test_flow_header_problems(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = tmp_path / "f.yaml"
    path.write_text(text)
    _, problems = load_folder(tmp_path, CHANNELS)
    field = "author" if "author" in text else "nodes"
    assert only(problems) == Problem(str(path), line, message, None, field)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (
            'name: x\nnodes:\n  - id: a\n    send_message: {text: "hi}\n',
            4,  # where the unclosed quote starts, not the end of the file
            "invalid YAML: found unexpected end of stream"
            " (while scanning a quoted scalar at line 4)",
        ),
        (
            "name: x\nnodes:\n  - id: a\n     send_message: {text: hi}\n",
            4,
            "invalid YAML: mapping values are not allowed here",
        ),
        (
            "name: x\nname: y\nnodes: []\n",
            2,
            'invalid YAML: found duplicate key "name" with value "y" (original value: "x")'
            " (while constructing a mapping at line 1)",
        ),
    ],
)
def test_invalid_yaml_names_the_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = tmp_path / "f.yaml"
    path.write_text(text)
    _, problems = load_folder(tmp_path, CHANNELS)
    assert only(problems) == Problem(str(path), line, message)


def test_not_a_mapping_and_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("- just\n- a list\n")
    (tmp_path / "b.yaml").write_bytes(b"name: \xff\xfe\n")
    _, problems = load_folder(tmp_path, CHANNELS)
    assert problems == [
        Problem(str(tmp_path / "a.yaml"), 1, "a flow file holds one mapping (name, nodes, ...)"),
        Problem(str(tmp_path / "b.yaml"), None, "not UTF-8 text"),
    ]


def test_every_problem_of_a_file_is_reported_in_line_order(tmp_path: Path) -> None:
    path, problems = problems_of(
        tmp_path,
        """
        nodes:
          - id: a
            send_message: {text: "@(x"}
            next: b
          - id: b
            wait_for_reply:
              timeout: soon
          - id: a
            add_to_group: X
          - id: c
            update_contact: {channel: sms}
            next: nowhere
        """,
    )
    # b failed to build but it exists: `next: b` is not reported; `next: nowhere` is
    assert [(p.line, p.node, p.field) for p in problems] == [
        (3, "nodes[0] (a)", "send_message.text"),
        (7, "nodes[1] (b)", "wait_for_reply.timeout"),
        (8, "nodes[2] (a)", "id"),
        (11, "nodes[3] (c)", "update_contact.channel"),
        (12, "nodes[3] (c)", "next"),
    ]
    assert all(p.file == str(path) for p in problems)


# -- across flows -------------------------------------------------------------------------------


def test_enter_flow_to_an_unknown_flow(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "parent",
        """
        nodes:
          - id: hello
            send_message: {text: hi}
            next: child
          - id: child
            enter_flow: survey
        """,
    )
    flows, problems = load_folder(tmp_path, CHANNELS)
    assert "parent" in flows  # valid on its own; the reference is what is wrong
    assert only(problems) == Problem(
        str(path), 6, "unknown flow 'survey'", "nodes[1] (child)", "enter_flow.flow"
    )
    write(tmp_path, "survey", "nodes:\n  - id: q\n    send_message: {text: q}\n")
    flows, problems = load_folder(tmp_path, CHANNELS)
    assert problems == []
    assert check_references(flows) == []


# -- valid flows and their versions -------------------------------------------------------------


def test_the_shipped_flows_are_valid() -> None:
    channels = set(load_config(SHIPPED.parent / "config.toml", {}).channels)
    flows, problems = load_folder(SHIPPED, channels)
    assert problems == []
    flow = flows["order_followup"]
    assert (flow.name, flow.language, flow.expire_after) == ("Order follow-up", "es", 3 * 86400)
    assert flow.first == "channel"


def test_version_is_the_hash_of_the_bytes(tmp_path: Path) -> None:
    text = "name: x\nnodes:\n  - id: a\n    send_message: {text: hi}\n"
    path = write(tmp_path, "f", text)
    first = parse_flow(path, path.read_bytes())
    again = parse_flow(path, path.read_bytes())
    assert first.version == again.version
    assert first.version == hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    path.write_text(text + "# a comment changes the version\n")
    assert parse_flow(path, path.read_bytes()).version != first.version
    assert (first.id, first.name, first.expire_after) == ("f", "x", 7 * 86400)


def test_flow_error_message_lists_every_problem(tmp_path: Path) -> None:
    text = b"nodes:\n  - id: a\n    send_message: {text: hi}\n    next: x\n    on_failure: y\n"
    with pytest.raises(FlowError) as info:
        parse_flow(tmp_path / "f.yaml", text, label="flows/f.yaml")
    assert str(info.value) == (
        "flows/f.yaml:4: nodes[0] (a): next: unknown node 'x'\n"
        "flows/f.yaml:5: nodes[0] (a): on_failure: unknown node 'y'"
    )


# -- reload -------------------------------------------------------------------------------------

GOOD = "name: Good\nnodes:\n  - id: a\n    send_message: {text: hi}\n"
GOOD_V2 = "name: Good v2\nnodes:\n  - id: a\n    send_message: {text: hello}\n"
BAD = "name: Bad\nnodes:\n  - id: a\n    send_message: {text: hi}\n    next: nope\n"


def registry(folder: Path) -> FlowRegistry:
    return FlowRegistry(folder, [Route("console", ("console",))], Limits())


def test_reload_keeps_the_previous_version_of_a_broken_file(tmp_path: Path) -> None:
    path = write(tmp_path, "greet", GOOD)
    reg = registry(tmp_path)
    report = reg.reload()
    assert (report.loaded, report.problems) == (["greet"], [])
    live = reg.flows["greet"]
    assert reg.engine.flows["greet"] is live

    path.write_text(BAD)
    report = reg.reload()
    assert report.kept == ["greet"]
    assert report.loaded == []
    assert [str(p) for p in report.problems] == [
        f"{path}:5: nodes[0] (a): next: unknown node 'nope'"
    ]
    assert reg.flows["greet"] is live
    assert reg.engine.flows["greet"] is live

    path.write_text(GOOD_V2)
    report = reg.reload()
    assert (report.loaded, report.kept, report.problems) == (["greet"], [], [])
    assert reg.flows["greet"].name == "Good v2"
    assert reg.flows["greet"].version != live.version
    assert reg.engine.flows["greet"] is reg.flows["greet"]

    report = reg.reload()
    assert (report.loaded, report.unchanged) == ([], ["greet"])

    path.unlink()
    report = reg.reload()
    assert report.removed == ["greet"]
    assert reg.flows == {}
    assert "greet" not in reg.engine.flows


def test_a_new_broken_file_is_not_loaded(tmp_path: Path) -> None:
    write(tmp_path, "good", GOOD)
    reg = registry(tmp_path)
    reg.reload()
    write(tmp_path, "bad", BAD)
    report = reg.reload()
    assert (report.unchanged, report.kept, report.loaded) == (["good"], [], [])
    assert [p.file for p in report.problems] == [str(tmp_path / "bad.yaml")]
    assert set(reg.flows) == {"good"}


def test_reload_reports_an_enter_flow_whose_target_was_removed(tmp_path: Path) -> None:
    parent = write(tmp_path, "parent", "nodes:\n  - id: go\n    enter_flow: child\n")
    child = write(tmp_path, "child", GOOD)
    reg = registry(tmp_path)
    assert reg.reload().problems == []
    child.unlink()
    report = reg.reload()
    assert report.removed == ["child"]
    assert report.problems == [
        Problem(str(parent), 3, "unknown flow 'child'", "nodes[0] (go)", "enter_flow.flow")
    ]


def test_load_folder_takes_a_known_flow_whose_file_is_unchanged(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("nodes:\n  - id: x\n    send_message: {text: hi}\n")
    (tmp_path / "b.yaml").write_text("nodes:\n  - id: y\n    send_message: {text: hi}\n")
    known, _ = load_folder(tmp_path)
    (tmp_path / "b.yaml").write_text("nodes:\n  - id: z\n    send_message: {text: hi}\n")
    again, problems = load_folder(tmp_path, None, known)
    assert not problems
    assert again["a"] is known["a"]  # not parsed again
    assert again["b"] is not known["b"] and list(again["b"].nodes) == ["z"]


def test_load_folder_remembers_what_each_version_of_a_file_gave(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        "nodes:\n  - id: x\n    send_message: {text: hi}\n    next: y\n"
    )
    parsed: dict[tuple[str, str], Any] = {}
    _, first = load_folder(tmp_path, None, None, parsed)
    _, again = load_folder(tmp_path, None, None, parsed)
    assert first and [p is q for p, q in zip(first, again, strict=True)] == [
        True
    ]  # not parsed again
    (tmp_path / "bad.yaml").write_text("nodes:\n  - id: x\n    send_message: {text: hi}\n")
    flows, problems = load_folder(tmp_path, None, None, parsed)
    assert not problems and list(flows) == ["bad"] and len(parsed) == 2
