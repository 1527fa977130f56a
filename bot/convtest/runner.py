"""Conversation tests: ``<flows>/tests/*.yaml`` played on the real engine and a real Valkey.

A test case (one YAML document) names a flow, a contact and a chat transcript::

    flow: order_followup
    contact: {name: Ana Souza, urn: "whatsapp:+5511988887777", fields: {order_id: A-1001}}
    steps:
      - bot: {template: order_delivered, body: [Ana, A-1001]}
      - user: "si, recibido"
      - bot: "¡Gracias, Ana! 🙌"
      - wait: 24h
    results: {delivery: Received}
    status: completed

Each case gets an empty database, a fresh contact and a :class:`~bot.core.clock.ManualClock`.
Events are queued exactly as the server queues them and applied by the real
:class:`~bot.work.worker.Worker`; outgoing messages go through its send path into a capturing
channel. A deterministic drain loop
(non-blocking reads of the ready and send streams until both are empty) replaces the background
loops, so a case runs in milliseconds and never sleeps. ``wait`` moves the clock forward, firing
every timer that falls due on the way at its own due time, in order.

``chasqui test`` starts a throwaway embedded Valkey of its own: it never touches the data of a
running server. The reference for authors is docs/testing-flows.md.

This module only plays cases: reading and checking test files is bot/convtest/cases.py, and how
messages are shown and matched in reports is bot/convtest/show.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import difflib
import logging
import tempfile
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bot.convtest.cases import Case, CaseFileError, case_files, load_cases, shown_path
from bot.convtest.show import compare, default_view, show
from bot.core.clock import ManualClock
from bot.core.config import ChannelConfig, Config
from bot.core.contacts import PHONE_SCHEMES
from bot.engine.apply import Engine
from bot.engine.events import Reply, Start
from bot.engine.flows import FlowRegistry
from bot.engine.sprint import Route, Session
from bot.store import Store
from bot.store.redisconn import Connector
from bot.work.host import StoreHost, route_of
from bot.work.runtime import limits_of
from bot.work.webhook_calls import WebhookCaller
from bot.work.worker import Worker
from channels.protocol import (
    Capabilities,
    Channel,
    ChannelHost,
    SendResult,
    UnknownChannelType,
    channel_class,
    channel_types,
)

CONSUMER = "convtest"
MAX_DRAIN_ROUNDS = 1000  # a flow the engine's own loop guard lets through still cannot hang us
MAX_TIMER_FIRINGS = 10_000

log = logging.getLogger("chasqui.convtest")


class CaptureChannel(Channel):
    """A channel that delivers nothing: it records each message handed to it, in order."""

    TYPE = "capture"
    CAPABILITIES = Capabilities(schemes=())

    def __init__(self, name: str, host: ChannelHost, sent: list[dict[str, Any]]) -> None:
        super().__init__(name, ChannelConfig(type=self.TYPE), host)
        self.sent = sent

    async def send(self, message: dict[str, Any]) -> SendResult:
        self.sent.append(dict(message))
        return SendResult(ok=True, external_id=message["uuid"])


@dataclass
class CaseResult:
    case: Case
    passed: bool
    problems: list[str] = field(default_factory=list)  # what went wrong, one line each
    expected: list[str] = field(default_factory=list)  # the transcript the test wrote
    actual: list[str] = field(default_factory=list)  # the conversation that happened

    @property
    def label(self) -> str:
        return self.case.label

    def diff(self) -> list[str]:
        """The transcripts side by side as ndiff lines (``-`` expected, ``+`` actual)."""
        if self.expected == self.actual:
            return []
        return [
            line for line in difflib.ndiff(self.expected, self.actual) if not line.startswith("?")
        ]

    def report(self) -> str:
        if self.passed:
            return f"PASS {self.label}"
        lines = [f"FAIL {self.label}"]
        diff = self.diff()
        if diff:
            lines.append("  (- expected, + actual)")
            lines += [f"  {line}" for line in diff]
        lines += [f"  {problem}" for problem in self.problems]
        return "\n".join(lines)


def _channel_type(type_name: str) -> type[Channel] | None:
    try:
        return channel_class(type_name)
    except (UnknownChannelType, ImportError, AttributeError):
        return None


def routes_for(config: Config, schemes: Iterable[str]) -> list[Route]:
    """The configured channels' routes, plus a ``test-<scheme>`` route for any other scheme.

    A route keeps the free-text window of its channel type, so a test sees what the engine
    refuses to send outside it; a ``test-<scheme>`` route takes the window of the channel type
    named like its scheme (``whatsapp``), if there is one.
    """
    routes: list[Route] = []
    covered: set[str] = set()
    for name, cfg in config.channels.items():
        cls = _channel_type(cfg.type)
        if cls is None:
            continue
        routes.append(route_of(name, cls.CAPABILITIES))
        covered.update(cls.CAPABILITIES.schemes)
    types = [t for t in (_channel_type(name) for name in channel_types()) if t is not None]
    for scheme in sorted(set(schemes) - covered):
        cls = _channel_type(scheme)  # the type named like it first (console, whatsapp)
        if cls is None or scheme not in cls.CAPABILITIES.schemes:
            cls = next((t for t in types if scheme in t.CAPABILITIES.schemes), None)
        if cls is not None:
            route = route_of(f"test-{scheme}", cls.CAPABILITIES)
            routes.append(replace(route, schemes=(scheme,)))
        else:
            routes.append(Route(f"test-{scheme}", (scheme,)))
    return routes


def channel_schemes(config: Config, channel: str) -> tuple[str, ...] | None:
    """The URN schemes a case's ``channel`` reaches: a configured channel's, else a channel
    type's; None when it is neither."""
    cfg = config.channels.get(channel)
    cls = _channel_type(cfg.type if cfg is not None else channel)
    return cls.CAPABILITIES.schemes if cls is not None else None


def on_channel(case: Case, config: Config) -> Case:
    """``case`` with a contact URN of its channel's scheme when it gives none."""
    schemes = channel_schemes(config, case.channel) if case.channel else None
    if not schemes or "urn" in case.contact:
        return case
    path = "+15550100001" if schemes[0] in PHONE_SCHEMES else "100001"
    return replace(case, contact={**case.contact, "urn": f"{schemes[0]}:{path}"})


class Runner:
    """Plays cases one after the other on one store (flushed before each case)."""

    def __init__(
        self, flows_folder: Path, store: Store, config: Config, schemes: Iterable[str]
    ) -> None:
        self.store, self.config = store, config
        routes = routes_for(config, schemes)
        self.sent: list[dict[str, Any]] = []
        host = StoreHost(store)
        self.channels: dict[str, Channel] = {
            r.name: CaptureChannel(r.name, host, self.sent) for r in routes
        }
        names = set(config.channels) | set(self.channels)
        self.registry = FlowRegistry(flows_folder, routes, limits_of(config), names)
        self.load_report = self.registry.reload()
        self.webhooks = WebhookCaller(allow_private=config.engine.webhook_allow_private)

    async def close(self) -> None:
        await self.webhooks.close()

    async def run(self, case: Case) -> CaseResult:
        if case.flow not in self.registry.flows:
            problems = [str(p) for p in self.load_report.problems if Path(p.file).stem == case.flow]
            return CaseResult(
                case, False, [f"flow {case.flow!r} is invalid (see chasqui check):", *problems]
            )
        await self.store.flush()
        await self.store.setup()
        self.sent.clear()
        try:
            return await _Play(self, case).run()
        except Exception as exc:  # a crash in one case must not hide the others' results
            log.exception("conversation test %s crashed", case.label)
            return CaseResult(case, False, [f"crashed: {type(exc).__name__}: {exc}"])


class Driver:
    """Applies a contact's queued events and sends, on ``store``, without background loops:
    what conversation tests and the simulator drive the real worker with."""

    def __init__(
        self,
        store: Store,
        engine: Callable[[], Engine],
        channels: dict[str, Channel],
        clock: ManualClock,
        webhooks: WebhookCaller,
    ) -> None:
        self.store, self.clock = store, clock
        self.worker = Worker(store, engine, channels, clock, webhooks=webhooks)

    async def drain(self) -> None:
        """Apply queued events and send queued messages until nothing is left to do."""
        for _ in range(MAX_DRAIN_ROUNDS):
            ready = await self.store.read_ready(CONSUMER, 100, None)
            if ready:
                await self.worker.process(ready)
            sends = await self.store.read_sendq(CONSUMER, 100, None)
            if sends:
                await self.worker.send(sends)
            if not ready and not sends and not await self.worker.sender.settle():
                return  # (inline sends in hand may have signalled more: another round)
        raise RuntimeError(f"still busy after {MAX_DRAIN_ROUNDS} rounds of events")

    async def pass_time(self, seconds: float) -> None:
        """Move the clock ``seconds`` ahead; each timer due meanwhile fires at its due time."""
        target = self.clock.now() + seconds
        for _ in range(MAX_TIMER_FIRINGS):
            due = await self.store.next_timer(target)
            if due is None:
                break
            self.clock.advance(max(0.0, due - self.clock.now()))
            await self.store.fire_timers(self.clock.now())
            await self.drain()
        self.clock.advance(target - self.clock.now())


class _Play(Driver):
    """One case being played."""

    def __init__(self, runner: Runner, case: Case) -> None:
        super().__init__(
            runner.store,
            lambda: runner.registry.engine,
            runner.channels,
            ManualClock(),
            runner.webhooks,
        )
        self.runner, self.case = runner, case
        self.seen = 0  # messages of runner.sent already taken
        self.cid = ""
        self.reply_channel: str | None = None

    def new_messages(self) -> list[dict[str, Any]]:
        sent = self.runner.sent[self.seen :]
        self.seen = len(self.runner.sent)
        return sent

    async def run(self) -> CaseResult:
        case, store = self.case, self.store
        extra: dict[str, Any] = {
            k: case.contact[k] for k in ("fields", "groups", "language") if k in case.contact
        }
        if case.channel is not None:
            problem = self._channel_problem(case.channel)
            if problem:
                return CaseResult(case, False, [problem])
            extra["channel"] = self._route_name(case.channel)
        contact, _ = await store.contact_for_urn(
            case.urn, case.contact.get("name", ""), self.clock.now(), **extra
        )
        self.cid = contact["uuid"]
        route = self.runner.registry.engine.route_for(contact)
        self.reply_channel = route[0].name if route else None
        if case.writes_first is None:  # else the contact's first message starts the flow
            event = Start(flow=case.flow, params=case.params, at=self.clock.now())
            await store.enqueue(self.cid, event.encode())
            await self.drain()
        new_contact = case.writes_first == "new"

        result = CaseResult(case, True)
        pending = self.new_messages()
        for step in case.steps:
            if step.kind == "bot":
                result.expected.append(step.shown)
                if pending:
                    ok, line = compare(step.value, pending.pop(0))
                    result.actual.append(line)
                    result.passed &= ok
                else:
                    result.passed = False  # expected a message that never came
                continue
            self._extra(result, pending)
            pending = []
            result.expected.append(step.shown)
            result.actual.append(step.shown)
            if step.kind == "user":
                reply = Reply(
                    text=step.value,
                    urn=case.urn,
                    channel=self.reply_channel,
                    at=self.clock.now(),
                    new_contact=new_contact,  # as the ingest says of a contact it just made
                )
                new_contact = False
                await store.enqueue(self.cid, reply.encode())
                await self.drain()
            else:
                await self.pass_time(step.value)
            pending = self.new_messages()
        self._extra(result, pending)
        await self._check_end(result)
        return result

    def _channel_problem(self, channel: str) -> str | None:
        schemes = channel_schemes(self.runner.config, channel)
        if schemes is None:
            configured = ", ".join(sorted(self.runner.config.channels)) or "none"
            return (
                f"channel: {channel!r} is neither a configured channel ({configured}) "
                f"nor a channel type ({', '.join(channel_types())})"
            )
        scheme = self.case.urn.split(":", 1)[0]
        if scheme not in schemes:
            return f"channel: {channel} reaches {', '.join(schemes)} URNs, not {self.case.urn}"
        return None

    def _route_name(self, channel: str) -> str:
        """The route the case's channel is: the configured one, else its type's test route."""
        if channel in self.runner.config.channels:
            return channel
        return f"test-{self.case.urn.split(':', 1)[0]}"

    def _extra(self, result: CaseResult, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            result.actual.append(f"bot: {show(default_view(message))}")
            result.passed = False

    async def _check_end(self, result: CaseResult) -> None:
        case = self.case
        problems = result.problems
        run = await root_run(self.store, self.cid)
        if run is None:
            problems.append(f"no run of {case.flow} was started")
            result.passed = False
            return
        results = run.get("results", {})
        for name, want in case.results.items():
            got = results.get(name)
            if got is None:
                known = ", ".join(sorted(results)) or "none"
                problems.append(
                    f"results.{name}: expected {show(want.get('category') or want)}, "
                    f"got no such result (results: {known})"
                )
                continue
            for key, value in want.items():
                actual = str(got.get(key, ""))
                if actual != value:
                    where = f"results.{name}" if key == "category" else f"results.{name}.{key}"
                    problems.append(f"{where}: expected {show(value)}, got {show(actual)}")
        if case.writes_first and run.get("flow") != case.flow:
            problems.append(
                f"flow: the contact's messages started {run.get('flow')}, not {case.flow}"
            )
        if case.status is not None and run.get("status") != case.status:
            problems.append(f"status: expected {case.status}, got {run.get('status')}")
        if case.contact_after:
            contact = await self.store.get_contact(self.cid) or {}
            problems += _contact_problems(case.contact_after, contact)
        if problems:
            result.passed = False
        if not result.passed:
            for message in await self.store.messages(self.cid):
                if message.get("direction") == "out" and message.get("status") == "failed":
                    code = (message.get("error") or {}).get("code")
                    problems.append(f"not sent ({code}): {show(default_view(message))}")
            for error in run.get("errors", []):
                problems.append(
                    f"run error at {error.get('node')}: {error.get('code')}"
                    + (f" ({error['message']})" if error.get("message") else "")
                )


async def root_run(store: Store, cid: str) -> dict[str, Any] | None:
    """The contact's top-level run: the one under way, else the one that ended last."""
    session = Session.from_json(await store.session_raw(cid))
    for frame in session.frames:
        if "parent" not in frame["run"]:
            run: dict[str, Any] = frame["run"]
            return run
    for run in await store.ended_runs(cid):  # newest first
        if "parent" not in run:
            return run
    return None


def _contact_problems(want: dict[str, Any], contact: dict[str, Any]) -> list[str]:
    problems = []
    for key in ("name", "language"):
        if key in want and (contact.get(key) or None) != (want[key] or None):
            problems.append(
                f"contact.{key}: expected {show(want[key])}, got {show(contact.get(key))}"
            )
    fields = contact.get("fields") or {}
    for key, value in (want.get("fields") or {}).items():
        if fields.get(key) != value:
            problems.append(
                f"contact.fields.{key}: expected {show(value)}, got {show(fields.get(key))}"
            )
    if "groups" in want and sorted(want["groups"]) != sorted(contact.get("groups") or []):
        problems.append(
            f"contact.groups: expected {show(sorted(want['groups']))}, "
            f"got {show(sorted(contact.get('groups') or []))}"
        )
    return problems


@contextlib.asynccontextmanager
async def throwaway_store(redis_url: str | None) -> AsyncIterator[Store]:
    """A store on ``redis_url`` (a throwaway database: it is flushed), else a private Valkey."""
    with tempfile.TemporaryDirectory(prefix="chasqui-test-") as folder:
        async with Connector(redis_url or "", Path(folder), port=0) as redis:
            yield Store(redis)


async def run_cases(
    cases: Sequence[Case],
    flows_folder: Path,
    *,
    redis_url: str | None = None,
    config: Config | None = None,
    on_result: Callable[[CaseResult], None] | None = None,
) -> list[CaseResult]:
    """Play ``cases``; ``redis_url`` must name a throwaway database (each case flushes it)."""
    if not cases:
        return []
    config = config or Config()
    cases = [on_channel(case, config) for case in cases]
    schemes = {case.urn.split(":", 1)[0] for case in cases}
    results: list[CaseResult] = []
    async with throwaway_store(redis_url) as store:
        runner = Runner(flows_folder, store, config, schemes)
        try:
            for case in cases:
                result = await runner.run(case)
                results.append(result)
                if on_result is not None:
                    on_result(result)
        finally:
            await runner.close()
    return results


async def run_file(
    path: Path,
    flows_folder: Path,
    *,
    redis_url: str | None = None,
    config: Config | None = None,
) -> list[CaseResult]:
    """Play every case of one test file; raises :class:`CaseFileError` if any is malformed."""
    cases, problems = load_cases([path], flows_folder)
    if problems:
        raise CaseFileError(problems)
    return await run_cases(cases, flows_folder, redis_url=redis_url, config=config)


# -- the command ------------------------------------------------------------------------------


def _selected_files(paths: Sequence[str], tests_folder: Path) -> tuple[list[Path], list[str]]:
    if not paths:
        return (case_files(tests_folder) if tests_folder.is_dir() else []), []
    files: list[Path] = []
    missing: list[str] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            files += case_files(path)
        elif path.is_file():
            files.append(path)
        else:
            missing.append(name)
    return files, missing


async def _main(config: Config, paths: Sequence[str], match: str | None) -> int:
    flows_folder = config.resolve(config.flows.path)
    if not flows_folder.is_dir():
        print(f"{flows_folder}: no such flows folder")
        return 2
    files, missing = _selected_files(paths, flows_folder / "tests")
    for name in missing:
        print(f"{name}: no such file or folder")
    cases, problems = load_cases(files, flows_folder)
    for problem in problems:
        print(f"ERROR {problem}")
    if match:
        cases = [c for c in cases if match.casefold() in c.label.casefold()]
    if not files and not missing:
        print(f"no conversation tests in {shown_path(flows_folder / 'tests')}")
    results = await run_cases(
        cases, flows_folder, config=config, on_result=lambda r: print(r.report(), flush=True)
    )
    failed = sum(1 for r in results if not r.passed)
    if problems or missing:
        print(
            f"{len(problems) + len(missing)} error(s) in the test files: those cases were not run"
        )
    print(f"{len(results) - failed} passed, {failed} failed")
    if problems or missing:
        return 2
    return 1 if failed else 0


def run_cli(config: Config, args: argparse.Namespace) -> int:
    """``chasqui test [paths] [-k match]``: 0 all passed, 1 failures, 2 malformed test files."""
    return asyncio.run(_main(config, list(args.paths or []), args.match))
