"""Conversation test files: reading ``<flows>/tests/*.yaml`` into checked :class:`Case` objects.

Kept apart from the runner (bot/convtest/runner.py) so that what a test file may say, and every
problem reported about one, is in one place that needs no database to exercise. The format
is described for authors in docs/testing-flows.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.convtest.show import show
from bot.core.durations import parse_duration
from bot.core.runstatus import RunStatus
from bot.flow.files import Problem, flow_files
from bot.flow.yamlsource import YamlError, line_of, load_documents, plain

STEP_KINDS = ("bot", "user", "wait")
BOT_KEYS = ("text", "template", "header", "body", "buttons", "quick_replies", "attachment")
CASE_KEYS = (
    "flow",
    "name",
    "channel",
    "contact",
    "params",
    "steps",
    "results",
    "status",
    "contact_after",
    "writes_first",
)
WRITES_FIRST = ("new", "known")  # the contact is new (its first message ever), or known
CONTACT_KEYS = ("name", "urn", "fields", "language", "groups")
CONTACT_AFTER_KEYS = ("name", "language", "fields", "groups")
RESULT_KEYS = ("category", "value")
STATUSES = tuple(RunStatus)
DEFAULT_URN = "test:contact"


@dataclass(frozen=True)
class Step:
    kind: str  # bot, user or wait
    value: Any  # bot: str | dict; user: str; wait: seconds
    shown: str  # the step as a transcript line, e.g. "wait: 24h"


@dataclass
class Case:
    file: str  # as shown in reports
    index: int  # 1-based document number in the file
    flow: str
    name: str | None
    contact: dict[str, Any]
    params: dict[str, Any]
    steps: list[Step]
    results: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> {category, value}
    status: str | None = None
    contact_after: dict[str, Any] = field(default_factory=dict)
    writes_first: str | None = None  # no start: the contact writes first (new | known)
    # the channel the case runs on: a configured channel's name or a channel type (its URN
    # scheme makes the contact's default URN); None: whichever reaches the contact's URN
    channel: str | None = None

    @property
    def label(self) -> str:
        where = f"{self.file}#{self.index}"
        return f"{where} ({self.name})" if self.name else where

    @property
    def urn(self) -> str:
        urn: str = self.contact.get("urn") or DEFAULT_URN
        return urn


class CaseFileError(Exception):
    """Test files that cannot be run; ``problems`` says where and why."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def _text(value: Any) -> str | None:
    """A scalar as the text a flow would produce (YAML ``42`` means the text "42")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    return None


def _texts(value: Any) -> Any:
    """Scalars inside lists and mappings as texts, so expectations compare with rendered values."""
    if isinstance(value, list):
        return [_texts(v) for v in value]
    if isinstance(value, dict):
        return {k: _texts(v) for k, v in value.items()}
    if value is None:
        return None
    return _text(value)


class _DocChecker:
    """Builds one :class:`Case` from one document, collecting every problem on the way."""

    def __init__(self, file: str, index: int, tree: Any, flows: Collection[str]) -> None:
        self.file, self.index, self.tree, self.flows = file, index, tree, flows
        self.problems: list[Problem] = []

    def problem(self, message: str, path: Sequence[str | int] = (), fld: str = "") -> None:
        self.problems.append(
            Problem(
                self.file, line_of(self.tree, path), message, f"document {self.index}", fld or None
            )
        )

    def mapping(self, raw: dict[str, Any], key: str) -> dict[str, Any]:
        value = raw.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem("must be a mapping", [key], key)
            return {}
        return value

    def unknown_keys(
        self, raw: dict[str, Any], known: Sequence[str], path: list[str | int], fld: str
    ) -> None:
        for key in raw:
            if key not in known:
                where = f"{fld}.{key}" if fld else key
                self.problem(f"unknown key (known: {', '.join(known)})", [*path, key], where)

    def build(self) -> Case | None:
        raw = plain(self.tree)
        if not isinstance(raw, dict):
            self.problem("a test case is a mapping (flow, contact, steps, ...)")
            return None
        self.unknown_keys(raw, CASE_KEYS, [], "")
        flow = raw.get("flow")
        if not isinstance(flow, str) or not flow:
            self.problem("required: the id of the flow to test", ["flow"], "flow")
        elif flow not in self.flows:
            known = ", ".join(sorted(self.flows)) or "none"
            self.problem(f"unknown flow {flow!r} (flows: {known})", ["flow"], "flow")
        name = raw.get("name")
        if name is not None and not isinstance(name, str | int | float):
            self.problem("must be a text", ["name"], "name")
        channel = raw.get("channel")
        if channel is not None and (not isinstance(channel, str) or not channel):
            self.problem("must be a channel's name or type", ["channel"], "channel")
        contact = self.contact(self.mapping(raw, "contact"))
        params = self.mapping(raw, "params")
        steps = self.steps(raw.get("steps"))
        results = self.results(self.mapping(raw, "results"))
        status = raw.get("status")
        if status is not None and status not in STATUSES:
            self.problem(
                f"unknown status {status!r} (one of {', '.join(STATUSES)})", ["status"], "status"
            )
        after = self.contact_after(self.mapping(raw, "contact_after"))
        writes_first = raw.get("writes_first")
        if writes_first is not None and writes_first not in WRITES_FIRST:
            self.problem(
                f"{writes_first!r}: new (the contact's first message ever) or known",
                ["writes_first"],
                "writes_first",
            )
        elif writes_first and params:
            self.problem(
                "a contact who writes first starts no start: no params", ["params"], "params"
            )
        if self.problems:
            return None
        return Case(
            file=self.file,
            index=self.index,
            flow=str(flow),
            name=None if name is None else str(name),
            contact=contact,
            params=params,
            steps=steps,
            results=results,
            status=status,
            contact_after=after,
            writes_first=writes_first,
            channel=channel,
        )

    def contact(self, raw: dict[str, Any]) -> dict[str, Any]:
        self.unknown_keys(raw, CONTACT_KEYS, ["contact"], "contact")
        contact: dict[str, Any] = {"name": ""}  # no urn: the channel's default (Case.urn)
        for key in ("name", "language", "urn"):
            if raw.get(key) is not None:
                value = _text(raw[key])
                if value is None:
                    self.problem("must be a text", ["contact", key], f"contact.{key}")
                else:
                    contact[key] = value
        urn = contact.get("urn", DEFAULT_URN)
        if ":" not in urn or not urn.split(":", 1)[0] or not urn.split(":", 1)[1]:
            self.problem(
                f"{urn!r} is not a URN (write scheme:path, e.g. whatsapp:+5511988887777)",
                ["contact", "urn"],
                "contact.urn",
            )
        fields = raw.get("fields") or {}
        if not isinstance(fields, dict) or any(_text(v) is None for v in fields.values()):
            self.problem("must map field names to texts", ["contact", "fields"], "contact.fields")
        else:
            contact["fields"] = {k: _text(v) for k, v in fields.items()}
        groups = raw.get("groups") or []
        if not isinstance(groups, list) or any(_text(g) is None for g in groups):
            self.problem("must be a list of group names", ["contact", "groups"], "contact.groups")
        else:
            contact["groups"] = [_text(g) for g in groups]
        return contact

    def steps(self, raw: Any) -> list[Step]:
        if not isinstance(raw, list) or not raw:
            self.problem("required: a list of bot / user / wait steps", ["steps"], "steps")
            return []
        steps = []
        for i, item in enumerate(raw):
            step = self.step(i, item)
            if step is not None:
                steps.append(step)
        return steps

    def step(self, i: int, raw: Any) -> Step | None:
        path: list[str | int] = ["steps", i]
        where = f"steps[{i}]"
        if not isinstance(raw, dict) or len(raw) != 1:
            self.problem("a step is one of bot: ..., user: ..., wait: ...", path, where)
            return None
        ((kind, value),) = raw.items()
        if kind not in STEP_KINDS:
            self.problem(f"unknown step {kind!r} (bot, user or wait)", [*path, kind], where)
            return None
        where = f"{where}.{kind}"
        if kind == "user":
            text = _text(value)
            if text is None:
                self.problem("the user's message must be a text", [*path, kind], where)
                return None
            return Step("user", text, f"user: {show(text)}")
        if kind == "wait":
            try:
                seconds = parse_duration(value)
            except ValueError as exc:
                self.problem(str(exc), [*path, kind], where)
                return None
            return Step("wait", seconds, f"wait: {value}")
        return self.bot_step(value, [*path, kind], where)

    def bot_step(self, value: Any, path: list[str | int], where: str) -> Step | None:
        text = _text(value)
        if text is not None:
            return Step("bot", text, f"bot: {show(text)}")
        if not isinstance(value, dict) or not value:
            self.problem(
                "expect a message text or a mapping of "
                f"{', '.join(BOT_KEYS)} (e.g. {{template: order_delivered}})",
                path,
                where,
            )
            return None
        before = len(self.problems)
        self.unknown_keys(value, BOT_KEYS, path, where)
        for key, item in value.items():
            scalar = key in ("text", "template", "attachment")
            ok = (
                _text(item) is not None
                if scalar
                else isinstance(item, list) or (key == "body" and isinstance(item, dict))
            )
            if key in BOT_KEYS and not ok:
                kind = "a text" if scalar else "a list"
                self.problem(f"must be {kind}", [*path, key], f"{where}.{key}")
        if len(self.problems) > before:
            return None
        expected = _texts(value)
        return Step("bot", expected, f"bot: {show(expected)}")

    def results(self, raw: dict[str, Any]) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for name, value in raw.items():
            where = f"results.{name}"
            if _text(value) is not None:
                out[name] = {"category": str(_text(value))}
            elif isinstance(value, dict) and value:
                self.unknown_keys(value, RESULT_KEYS, ["results", name], where)
                out[name] = {k: str(_text(v)) for k, v in value.items() if k in RESULT_KEYS}
            else:
                self.problem(
                    "expect a category, or {category: ..., value: ...}", ["results", name], where
                )
        return out

    def contact_after(self, raw: dict[str, Any]) -> dict[str, Any]:
        self.unknown_keys(raw, CONTACT_AFTER_KEYS, ["contact_after"], "contact_after")
        out: dict[str, Any] = {}
        for key in ("name", "language"):
            if key in raw:
                out[key] = _text(raw[key]) if raw[key] is not None else None
        if "fields" in raw:
            fields = raw["fields"]
            if isinstance(fields, dict):
                out["fields"] = _texts(fields)
            else:
                self.problem("must be a mapping", ["contact_after", "fields"], "contact_after")
        if "groups" in raw:
            groups = raw["groups"] or []
            if isinstance(groups, list):
                out["groups"] = _texts(groups)
            else:
                self.problem("must be a list", ["contact_after", "groups"], "contact_after")
        return out


def parse_cases(data: str, file: str, flows: Collection[str]) -> tuple[list[Case], list[Problem]]:
    """The test cases of one file's text, and the problems of the documents that are not."""
    try:
        docs = load_documents(data)
    except YamlError as exc:
        return [], [Problem(file, exc.line, exc.message)]
    cases: list[Case] = []
    problems: list[Problem] = []
    for index, tree in enumerate(docs, 1):
        if tree is None:  # an empty document, e.g. after a trailing ---
            continue
        checker = _DocChecker(file, index, tree, flows)
        case = checker.build()
        problems += checker.problems
        if case is not None:
            cases.append(case)
    return cases, problems


def shown_path(path: Path) -> str:
    """``path`` as reports show it: relative to the working folder when it is below it."""
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    return str(path)


def case_files(folder: Path) -> list[Path]:
    """The test files of a folder (``*.yaml``, ``*.yml``), sorted."""
    return sorted(p for p in folder.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))


def load_cases(paths: Iterable[Path], flows_folder: Path) -> tuple[list[Case], list[Problem]]:
    """Every well-formed case of ``paths`` and the problems of the malformed ones."""
    flows = {p.stem for p in flow_files(flows_folder)} if flows_folder.exists() else set()
    cases: list[Case] = []
    problems: list[Problem] = []
    for path in paths:
        shown = shown_path(path)
        try:
            data = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(shown, None, f"cannot read: {exc}"))
            continue
        more, wrong = parse_cases(data, shown, flows)
        cases += more
        problems += wrong
    return cases, problems
