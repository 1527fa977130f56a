"""Flow files: load a folder of YAML flows, validate them fully, say exactly what is wrong.

Every problem names the file, the line, the node and the field, e.g.
``flows/x.yaml:14: nodes[3] (ask): next: unknown node 'thanx'``, and a file's problems are all
reported at once so an author fixes them in one pass. A flow's version is the hash of its file.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.core.durations import Duration, parse_duration
from bot.core.validation import location, message
from bot.flow.expressions import ExpressionError, compile_text
from bot.flow.nodes import NODE_KINDS
from bot.flow.nodes.base import FAILURE, Node
from bot.flow.triggers import Trigger, build_triggers
from bot.flow.yamlsource import YamlError, line_of, load_documents, plain

NODE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
NODE_KEYS = {"id", "next", "on_failure"}
DEFAULT_EXPIRE = "7d"


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    message: str
    node: str | None = None  # "nodes[3] (ask)"
    field: str | None = None  # "wait_for_reply.cases[0]"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        parts = [where, self.node, self.field, self.message]
        return ": ".join(p for p in parts if p)


class FlowError(Exception):
    """A flow file that cannot be used; ``problems`` lists everything wrong with it."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


@dataclass
class Flow:
    id: str
    name: str
    language: str
    expire_after: int
    nodes: dict[str, Node]
    version: str
    path: Path
    triggers: tuple[Trigger, ...] = ()  # what starts it when a contact writes first
    machine: Any = field(default=None, repr=False)  # transitions.Machine, set by bot.flow.machine

    @property
    def first(self) -> str:
        return next(iter(self.nodes))


class _Header(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    language: str = "en"
    expire_after: Duration = DEFAULT_EXPIRE
    nodes: list[Any] = Field(min_length=1)
    triggers: list[Any] = []


class _FlowChecker:
    """Collects the problems of one file while building its nodes."""

    def __init__(self, path: Path, label: str, tree: Any, channels: set[str] | None) -> None:
        self.path, self.label, self.tree, self.channels = path, label, tree, channels
        self.problems: list[Problem] = []

    def problem(
        self, message: str, yaml_path: list[str | int], node: str | None = None, fld: str = ""
    ) -> None:
        line = line_of(self.tree, yaml_path)
        self.problems.append(Problem(self.label, line, message, node, fld or None))

    def build_node(self, index: int, raw: Any) -> Node | None:
        path: list[str | int] = ["nodes", index]
        where = f"nodes[{index}]"
        if not isinstance(raw, dict):
            self.problem("a node must be a mapping with an id and a kind", path, where)
            return None
        node_id = raw.get("id")
        if not isinstance(node_id, str) or not NODE_ID.match(node_id):
            self.problem(
                f"id: {node_id!r} is not a valid node id (letters, digits, _ -)", path, where
            )
            return None
        where = f"nodes[{index}] ({node_id})"
        kinds = [k for k in raw if k in NODE_KINDS]
        unknown = [k for k in raw if k not in NODE_KINDS and k not in NODE_KEYS]
        for key in unknown:
            hint = difflib.get_close_matches(key, [*NODE_KINDS, *NODE_KEYS], n=1, cutoff=0.75)
            self.problem(
                f"unknown key {key!r}"
                + (f" (did you mean {hint[0]!r}?)" if hint else "")
                + f" (node kinds: {', '.join(NODE_KINDS)})",
                [*path, key],
                where,
            )
        if not kinds and unknown:
            return None  # the unknown key is the problem; "no kind" would only repeat it
        if len(kinds) != 1:
            self.problem(f"a node has exactly one kind, found {kinds or 'none'}", path, where)
            return None
        kind = kinds[0]
        try:
            body = NODE_KINDS[kind].model_validate(raw[kind] if raw[kind] is not None else {})
        except ValidationError as exc:
            for err in exc.errors():
                self.problem(
                    message(err),
                    [*path, kind, *err["loc"]],
                    where,
                    location([kind, *err["loc"]]),
                )
            return None
        for key in ("next", "on_failure"):
            if raw.get(key) is not None and not isinstance(raw.get(key), str):
                self.problem(f"must be a node id, not {raw[key]!r}", [*path, key], where, key)
                return None
        if raw.get("on_failure") and not body.CAN_FAIL:
            self.problem(
                f"{kind} cannot fail, on_failure does not apply",
                [*path, "on_failure"],
                where,
                "on_failure",
            )
        line = line_of(self.tree, [*path, kind])
        node = Node(node_id, kind, body, raw.get("next"), raw.get("on_failure"), index, line)
        for fld, text in body.texts():
            try:
                compile_text(text)
            except ExpressionError as exc:
                self.problem(
                    f"invalid expression: {exc.message} (at {exc.position})",
                    [*path, kind, *_yaml_path(fld)],
                    where,
                    f"{kind}.{fld}",
                )
        channel = getattr(body, "channel", None)
        if channel and self.channels is not None and channel not in self.channels:
            known = ", ".join(sorted(self.channels)) or "none configured"
            self.problem(
                f"unknown channel {channel!r} (channels: {known})",
                [*path, kind, "channel"],
                where,
                f"{kind}.channel",
            )
        return node

    def check_targets(self, nodes: dict[str, Node], declared: set[str]) -> None:
        """Exits to ids that no node of the file declares."""
        for node in nodes.values():
            where = f"nodes[{node.index}] ({node.id})"
            for exit_name, target in node.exits().items():
                if exit_name == FAILURE and not node.on_failure:
                    continue  # defaults to `next`, checked as such
                if target is not None and target not in declared:
                    fld = "on_failure" if exit_name == FAILURE else _exit_field(node, exit_name)
                    self.problem(
                        f"unknown node {target!r}",
                        ["nodes", node.index, *_yaml_path(fld)],
                        where,
                        fld,
                    )

    def check_graph(self, nodes: dict[str, Node]) -> None:
        """Unreachable nodes and cycles; only meaningful once every node was built."""
        reachable = _reachable(nodes)
        for node in nodes.values():
            if node.id not in reachable:
                self.problem(
                    "unreachable: no exit leads here",
                    ["nodes", node.index],
                    f"nodes[{node.index}] ({node.id})",
                )
        for cycle in _cycles_without_wait(nodes):
            first = nodes[cycle[0]]
            self.problem(
                "cycle with no wait_for_reply: " + " -> ".join([*cycle, cycle[0]]),
                ["nodes", first.index],
                f"nodes[{first.index}] ({first.id})",
            )


def _yaml_path(fld: str) -> list[str | int]:
    out: list[str | int] = []
    for part in re.findall(r"[^.\[\]]+", fld):
        out.append(int(part) if part.isdigit() else part)
    return out


def _exit_field(node: Node, exit_name: str) -> str:
    if exit_name.startswith("case"):
        return f"{node.kind}.cases[{exit_name[4:]}].next"
    if exit_name == "other":
        body_other = getattr(node.body, "other", None)
        return f"{node.kind}.other.next" if body_other and body_other.next else "next"
    if exit_name == "timeout":
        return f"{node.kind}.on_timeout.next"
    return "next"


def _reachable(nodes: dict[str, Node]) -> set[str]:
    seen: set[str] = set()
    todo = [next(iter(nodes))]
    while todo:
        node_id = todo.pop()
        if node_id in seen or node_id not in nodes:
            continue
        seen.add(node_id)
        todo.extend(t for t in nodes[node_id].exits().values() if t is not None)
    return seen


def _cycles_without_wait(nodes: dict[str, Node]) -> Iterator[list[str]]:
    """Cycles among edges that do not leave a wait: a run on one would never stop by itself."""
    graph = {
        n.id: list(dict.fromkeys(t for t in n.exits().values() if t in nodes))
        if not n.body.WAITS
        else []
        for n in nodes.values()
    }
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node_id: str) -> Iterator[list[str]]:
        state[node_id] = 1
        stack.append(node_id)
        for target in graph[node_id]:
            if state.get(target) == 1:
                yield stack[stack.index(target) :]
            elif target not in state:
                yield from visit(target)
        stack.pop()
        state[node_id] = 2

    for node_id in graph:
        if node_id not in state:
            yield from visit(node_id)


def parse_flow(path: Path, data: bytes, channels: set[str] | None = None, label: str = "") -> Flow:
    """Build one flow from a file's bytes, or raise FlowError with every problem found."""
    label = label or str(path)
    try:
        docs = load_documents(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise FlowError([Problem(label, None, "not UTF-8 text")]) from None
    except YamlError as exc:
        raise FlowError([Problem(label, exc.line, exc.message)]) from None
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise FlowError([Problem(label, 1, "a flow file holds one mapping (name, nodes, ...)")])
    tree = docs[0]
    checker = _FlowChecker(path, label, tree, channels)
    try:
        header = _Header.model_validate(plain(tree))
    except ValidationError as exc:
        for err in exc.errors():
            checker.problem(message(err), list(err["loc"]), None, location(err["loc"]))
        raise FlowError(checker.problems) from None
    nodes: dict[str, Node] = {}
    declared = {
        raw["id"]
        for raw in header.nodes
        if isinstance(raw, dict) and isinstance(raw.get("id"), str)
    }
    for index, raw in enumerate(header.nodes):
        node = checker.build_node(index, raw)
        if node is None:
            continue
        if node.id in nodes:
            checker.problem(
                f"duplicate id {node.id!r} (first at nodes[{nodes[node.id].index}])",
                ["nodes", index, "id"],
                f"nodes[{index}] ({node.id})",
                "id",
            )
            continue
        nodes[node.id] = node
    checker.check_targets(nodes, declared)
    triggers, trigger_problems = build_triggers(
        header.triggers, channels, lambda p: line_of(tree, p)
    )
    for tp in trigger_problems:
        checker.problem(tp.message, tp.path, None, tp.field)
    if not checker.problems:
        checker.check_graph(nodes)
    if checker.problems:
        raise FlowError(sorted(checker.problems, key=lambda p: p.line or 0))
    return Flow(
        id=path.stem,
        name=header.name or path.stem,
        language=header.language,
        expire_after=parse_duration(header.expire_after),
        nodes=nodes,
        version=version_of(data),
        path=path,
        triggers=tuple(triggers),
    )


def version_of(data: bytes) -> str:
    """A flow's version: the hash of its file's bytes."""
    return hashlib.sha256(data).hexdigest()[:16]


def flow_files(folder: Path) -> list[Path]:
    """The flow files of a folder (conversation tests under ``tests/`` are not flows)."""
    if folder.is_file():
        return [folder]
    return sorted(p for p in folder.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))


def check_references(flows: dict[str, Flow]) -> list[Problem]:
    """Problems between flows: an ``enter_flow`` to a flow that does not exist."""
    problems = []
    for flow in flows.values():
        for node in flow.nodes.values():
            target = getattr(node.body, "flow", None)
            if node.kind == "enter_flow" and target not in flows:
                problems.append(
                    Problem(
                        str(flow.path),
                        node.line,
                        f"unknown flow {target!r}",
                        f"nodes[{node.index}] ({node.id})",
                        "enter_flow.flow",
                    )
                )
    return problems


def trigger_conflicts(flows: dict[str, Flow]) -> list[tuple[str, str, Problem]]:
    """Two flows claiming the same keyword (or both the catch-all, or both new contacts) on a
    channel they share, as (the flow claiming second, the flow it clashes with, the problem
    naming both files). Flows claim in the mapping's order: the first keeps what it claims, and
    a flow that clashes claims nothing (so one mistake is reported once)."""
    owners: dict[tuple[str, str | None], tuple[Flow, Trigger]] = {}
    found: list[tuple[str, str, Problem]] = []
    for flow in flows.values():
        clashes: dict[str, tuple[Flow, Trigger, Trigger, str]] = {}
        for trigger in flow.triggers:
            for what, channel in trigger.claims():
                if channel is None:  # every channel: meets each channel's claim of it too
                    keys = [k for k in owners if k[0] == what]
                else:
                    keys = [(what, channel), (what, None)]
                for key in keys:
                    owner = owners.get(key)
                    if owner is None or what in clashes:
                        continue
                    shared = key[1] or channel
                    where = f"channel {shared!r}" if shared else "every channel"
                    clashes[what] = (owner[0], owner[1], trigger, where)
        for what, (holder, theirs, trigger, where) in clashes.items():
            first = f"{holder.path}:{theirs.line}" if theirs.line else str(holder.path)
            problem = Problem(
                str(flow.path),
                trigger.line,
                f"{what} on {where} is already claimed by {first} (flow {holder.id!r}): "
                "one message starts one flow",
                None,
                f"triggers[{trigger.index}]",
            )
            found.append((flow.id, holder.id, problem))
        if not clashes:
            for trigger in flow.triggers:
                for key in trigger.claims():
                    owners.setdefault(key, (flow, trigger))
    return found


Parsed = dict[tuple[str, str], "Flow | list[Problem]"]
"""What parsing each (file, version) gave: the flow, or its problems (see :func:`load_folder`)."""


def load_folder(
    folder: Path,
    channels: set[str] | None = None,
    known: dict[str, Flow] | None = None,
    parsed: Parsed | None = None,
) -> tuple[dict[str, Flow], list[Problem]]:
    """Every valid flow of ``folder`` and the problems of the others. A flow of ``known`` (e.g.
    the ones running) whose file has not changed since is taken as it is, not parsed again;
    ``parsed``, kept by the caller between calls with the same ``channels``, remembers what each
    version of a file gave, so an unchanged file (an invalid one too) is parsed once."""
    flows: dict[str, Flow] = {}
    problems: list[Problem] = []
    for path in flow_files(folder):
        data = path.read_bytes()
        version = version_of(data)
        same = (known or {}).get(path.stem)
        if same is not None and same.path == path and same.version == version:
            flows[path.stem] = same
            continue
        found = parsed.get((str(path), version)) if parsed is not None else None
        if found is None:
            try:
                found = parse_flow(path, data, channels)
            except FlowError as exc:
                found = exc.problems
            if parsed is not None:
                parsed[(str(path), version)] = found
        if isinstance(found, list):
            problems.extend(found)
        else:
            flows[path.stem] = found
    problems.extend(check_references(flows))
    problems.extend(problem for _, _, problem in trigger_conflicts(flows))
    return flows, problems
