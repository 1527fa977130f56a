"""``chasqui simulate FLOW``: chat with a flow in the terminal, on the real engine.

By default it plays on a **throwaway store** (its own embedded Valkey in a temporary folder, as
``chasqui test`` does) and delivers nothing: every channel is replaced by one that shows the
message here. A configured channel keeps its rules there -- WhatsApp's 24-hour window and its
templates, checked against the channel's synced templates (read from the configured store, never
written) or, without any, the sandbox's seed. Time stands still between replies; ``/wait 2h``
moves it on, firing the timers that fall due, as a conversation test's ``wait`` does.

``live=True`` keeps the older behaviour: the configured Redis and the real channels. The contact,
its runs and messages stay there and count in flow stats, a ``whatsapp:`` URN is really sent to,
and a running ``chasqui serve`` may apply the events (then only its effects are seen here).

Either way each message is shown as the contact sees it (a template rendered from its
definition, quick replies as numbered choices), each failure is printed (a message refused or
failed, a webhook call that failed), and so is each run's end and its results.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import Any, Protocol, TextIO

from bot.convtest.runner import Driver, routes_for, throwaway_store
from bot.convtest.show import default_view, show
from bot.convtest.templateview import Choice, plain, render
from bot.core.clock import ManualClock
from bot.core.config import ChannelConfig, Config
from bot.core.durations import parse_duration
from bot.engine.events import Reply, Start
from bot.engine.flows import FlowRegistry
from bot.engine.sprint import Session
from bot.store import Store
from bot.work.host import StoreHost
from bot.work.runtime import Runtime, limits_of
from bot.work.webhook_calls import WebhookCaller
from channels.protocol import (
    Capabilities,
    Channel,
    ChannelHost,
    RateLimit,
    SendResult,
    TemplatePreview,
    channel_class,
)

HELP = "type a reply or a choice's number; /wait 1h lets time pass; /restart; /quit"
QUIET = 0.75  # --live: the flow has said all it will once nothing changed for this long
POLL = 0.25


class ReportingCaller(WebhookCaller):
    """Makes the calls as the server does, and notes each one that did not answer 2xx."""

    def __init__(self, allow_private: bool) -> None:
        super().__init__(allow_private=allow_private)
        self.failures: list[str] = []

    async def call(self, request: dict[str, Any]) -> dict[str, Any]:
        response = await super().call(request)
        status = int(response.get("status", 0))
        if not 200 <= status < 300:
            why = response.get("error") or f"answered {status}"
            self.failures.append(
                f"webhook {request.get('method', 'GET')} {request.get('url')} failed: {why}"
            )
        return response


class ShownChannel(Channel):
    """Stands in for a channel: sends nothing, refuses what its provider would refuse."""

    TYPE = "simulated"
    CAPABILITIES = Capabilities(schemes=())

    def __init__(self, name: str, host: ChannelHost, real: Channel | None) -> None:
        super().__init__(name, ChannelConfig(type=self.TYPE), host)
        self.real = real  # the configured channel, previewing templates; None: it has none

    async def send(self, message: dict[str, Any]) -> SendResult:
        template = message.get("template")
        if template and self.real is not None:
            preview = self.real.preview_template(template)
            if preview is not None and preview.problem is not None:
                return SendResult(False, error=preview.problem)
        return SendResult(ok=True, external_id=message["uuid"])


def _templated(config: ChannelConfig) -> bool:
    try:
        return channel_class(config.type).CAPABILITIES.templates
    except ValueError:
        return False


async def synced_templates(store: Store, config: Config) -> dict[str, list[dict[str, Any]]]:
    """The synced templates of each configured channel that sends templates."""
    names = [name for name, cfg in config.channels.items() if _templated(cfg)]
    return {name: await store.templates(name) for name in names}


async def _configured_templates(config: Config) -> dict[str, list[dict[str, Any]]]:
    """The synced templates in the configured store, read only; none when it has no data."""
    from bot.store.redisconn import Connector, has_embedded_data

    url = config.redis.url.get_secret_value()
    data_dir = config.resolve(config.redis.data_dir)
    if not any(_templated(c) for c in config.channels.values()):
        return {}
    if not url and not has_embedded_data(data_dir):
        return {}
    async with Connector(url, data_dir) as redis:
        return await synced_templates(Store(redis), config)


class _GivenTemplates:
    """A channel host holding fixed templates: a channel built only to preview them."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items

    async def templates(self, channel: str) -> list[dict[str, Any]]:
        return self.items

    async def save_templates(self, channel: str, templates: Sequence[dict[str, Any]]) -> None:
        return None

    async def throttle(self, bucket: str, rate: RateLimit) -> None:
        return None


class _Books:
    """Each templated channel, built (never started) to preview its templates: its synced
    ones, else its type's demo templates (the WhatsApp sandbox's seed)."""

    def __init__(self) -> None:
        self.by_channel: dict[str, Channel] = {}

    @classmethod
    async def load(cls, config: Config, synced: dict[str, list[dict[str, Any]]]) -> _Books:
        books = cls()
        for name, cfg in config.channels.items():
            if not _templated(cfg):
                continue
            kind = channel_class(cfg.type)
            given = _GivenTemplates(synced.get(name) or kind.demo_templates())
            try:
                channel = kind(name, cfg, given)
            except ValueError:  # settings the real channel refuses: shown by name only
                continue
            await channel.load_templates()
            books.by_channel[name] = channel
        return books

    def of(self, channel: str | None) -> Channel | None:
        return self.by_channel.get(channel or "")

    def preview(self, channel: str | None, block: dict[str, Any]) -> TemplatePreview | None:
        real = self.of(channel)
        return real.preview_template(block) if real is not None else None


class _Mode(Protocol):
    store: Store
    webhooks: ReportingCaller
    registry: FlowRegistry

    def now(self) -> float: ...

    async def settle(self, cid: str) -> None: ...

    async def wait(self, seconds: int) -> bool: ...


class _Throwaway:
    """The engine and worker on a private store; events applied at once, nothing delivered."""

    def __init__(self, config: Config, store: Store, scheme: str, books: _Books) -> None:
        self.store = store
        routes = routes_for(config, {scheme})
        host = StoreHost(store)
        channels: dict[str, Channel] = {
            r.name: ShownChannel(r.name, host, books.of(r.name) if r.templates else None)
            for r in routes
        }
        folder = config.resolve(config.flows.path)
        names = set(config.channels) | set(channels)
        self.registry = FlowRegistry(folder, routes, limits_of(config), names)
        self.report = self.registry.reload()
        self.webhooks = ReportingCaller(config.engine.webhook_allow_private)
        self.clock = ManualClock(time.time())
        self.driver = Driver(
            store, lambda: self.registry.engine, channels, self.clock, self.webhooks
        )

    def now(self) -> float:
        return self.clock.now()

    async def settle(self, cid: str) -> None:
        await self.driver.drain()

    async def wait(self, seconds: int) -> bool:
        await self.driver.pass_time(seconds)
        return True


class _Live:
    """The configured store and channels, with the worker's background loops."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.store = runtime.store
        self.registry = runtime.registry
        self.webhooks = ReportingCaller(runtime.config.engine.webhook_allow_private)

    def now(self) -> float:
        return self.runtime.clock.now()

    async def settle(self, cid: str) -> None:
        """Wait until the contact's messages and session have stayed the same a moment."""
        last: Any = None
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < QUIET:
            await asyncio.sleep(POLL)
            messages = await self.store.messages(cid, 1000)
            state = (
                [(m.get("uuid"), m.get("status")) for m in messages],
                await self.store.session_raw(cid),
                len(self.webhooks.failures),
            )
            if state != last:
                last, quiet_since = state, time.monotonic()

    async def wait(self, seconds: int) -> bool:
        return False


def render_message(message: dict[str, Any], books: _Books) -> tuple[list[str], list[Choice]]:
    """The lines a person reads for one outgoing message, and the choices it offers."""
    lines: list[str] = []
    choices: list[Choice] = [(str(r), None) for r in message.get("quick_replies") or []]
    template = message.get("template")
    if template:
        if message.get("text") is not None:  # a channel without templates: the text goes too
            lines.append(plain(template))
        else:
            preview = books.preview(message.get("channel"), template)
            shown, buttons = render(preview, template) if preview else ([plain(template)], [])
            lines += shown
            choices = buttons or choices
    if message.get("text"):
        lines.append(message["text"])
    if message.get("attachment"):
        lines.append(f"[attachment {message['attachment']}]")
    lines += [f"  ({i}) {text}" for i, (text, _) in enumerate(choices, 1)]
    return lines, choices


def _error(message: dict[str, Any]) -> str:
    error = message.get("error") or {}
    code = error.get("code", "failed")
    return f"{code}: {error['message']}" if error.get("message") else str(code)


def _results(run: dict[str, Any]) -> list[str]:
    lines = []
    for name, result in (run.get("results") or {}).items():
        said = f", input {show(result['input'])}" if result.get("input") is not None else ""
        lines.append(
            f"   {name}: {result.get('category')} (value {show(result.get('value'))}{said})"
        )
    return lines or ["   (no results)"]


class _Chat:
    def __init__(
        self, mode: _Mode, books: _Books, cid: str, flow: str, out: TextIO, inp: TextIO
    ) -> None:
        self.mode, self.books, self.cid, self.flow = mode, books, cid, flow
        self.store = mode.store
        self.out, self.inp = out, inp
        self.shown: set[str] = set()  # messages shown
        self.failed: set[str] = set()  # failures printed
        self.ended: set[str] = set()  # runs whose end was printed
        self.webhook_failures = 0
        self.choices: list[Choice] = []

    def say(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    async def skip_history(self) -> None:
        """--live on a known contact: what happened before this session is not shown again."""
        for message in await self.store.messages(self.cid, 1000):
            self.shown.add(message["uuid"])
            self.failed.add(message["uuid"])
        self.ended.update(run["uuid"] for run in await self.store.ended_runs(self.cid))

    async def show_news(self) -> None:
        for message in await self.store.messages(self.cid, 1000):
            if message.get("direction") != "out":
                continue
            uuid, failed = message["uuid"], message.get("status") == "failed"
            if uuid not in self.shown and not failed:
                lines, choices = render_message(message, self.books)
                for line in lines:
                    self.say(f"bot> {line}")
                self.choices = choices or self.choices
            self.shown.add(uuid)
            if failed and uuid not in self.failed:
                self.failed.add(uuid)
                self.say(f"!! not sent ({_error(message)}): {show(default_view(message))}")
        failures = self.mode.webhooks.failures
        for failure in failures[self.webhook_failures :]:
            self.say(f"!! {failure}")
        self.webhook_failures = len(failures)
        await self._show_ends()

    async def _show_ends(self) -> None:
        runs = [r for r in await self.store.ended_runs(self.cid) if "parent" not in r]
        for run in reversed(runs):  # oldest first
            if run["uuid"] in self.ended:
                continue
            self.ended.add(run["uuid"])
            status = run.get("status")
            reasons = [e["message"] for e in run.get("errors", []) if e.get("code") == status]
            why = f" ({reasons[-1]})" if reasons and reasons[-1] else ""
            self.say(f"== {run.get('flow')} ended: {status}{why}; results:")
            for line in _results(run):
                self.say(line)

    async def show_unfinished(self) -> None:
        session = Session.from_json(await self.store.session_raw(self.cid))
        if session.frames:
            frame = session.frames[0]
            self.say(f"== {frame['flow']} still {frame['run'].get('status')} at {frame['node']}")
            for line in _results(frame["run"]):
                self.say(line)

    async def _read(self) -> str | None:
        print("you> ", end="", file=self.out, flush=True)
        line = await asyncio.to_thread(self.inp.readline)
        if not line:
            print(file=self.out)
            return None
        return line.strip()

    async def reply(self, text: str) -> Reply:
        payload: str | None = None
        if text.isdigit() and 0 < int(text) <= len(self.choices):
            text, payload = self.choices[int(text) - 1]
        contact = await self.store.get_contact(self.cid) or {}
        route = self.mode.registry.engine.route_for(contact)
        channel = route[0].name if route else None
        urn = route[1] if route else None
        return Reply(text=text, channel=channel, urn=urn, payload=payload, at=self.mode.now())

    async def run(self) -> int:
        await self.store.enqueue(self.cid, Start(flow=self.flow, at=self.mode.now()).encode())
        while True:
            await self.mode.settle(self.cid)
            await self.show_news()
            text = await self._read()
            if text is None or text == "/quit":
                await self.show_unfinished()
                return 0
            if text.startswith("/wait"):
                await self._wait(text[len("/wait") :].strip())
                continue
            event = (
                Start(flow=self.flow, at=self.mode.now())
                if text == "/restart"
                else await self.reply(text)
            )
            await self.store.enqueue(self.cid, event.encode())

    async def _wait(self, duration: str) -> None:
        try:
            seconds = parse_duration(duration)
        except ValueError as exc:
            self.say(f"!! {exc}")
            return
        if not await self.mode.wait(seconds):
            self.say("!! /wait needs the throwaway store: with --live, timers run on the clock")


def _no_flow(registry: FlowRegistry, problems: Sequence[Any], flow_id: str) -> bool:
    if flow_id in registry.flows:
        return False
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"no valid flow {flow_id!r}; flows: {', '.join(sorted(registry.flows))}", file=sys.stderr)
    return True


async def simulate(
    config: Config,
    flow_id: str,
    *,
    name: str = "Ana",
    urn: str | None = None,
    fields: dict[str, str] | None = None,
    live: bool = False,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
) -> int:
    """Chat with ``flow_id`` reading replies from ``stdin``; 0 when left, 1 no such flow."""
    urn = urn or f"console:{name.lower()}"
    inp, out = stdin or sys.stdin, stdout or sys.stdout
    async with AsyncExitStack() as stack:
        mode: _Throwaway | _Live
        if live:
            runtime = Runtime(config)
            report = runtime.load_flows()
            if _no_flow(runtime.registry, report.problems, flow_id):
                return 1
            await runtime.start(work=False)
            stack.push_async_callback(runtime.stop)
            mode = _Live(runtime)
            assert runtime.worker is not None
            runtime.worker.webhooks = mode.webhooks
            await runtime.worker.start()
            books = await _Books.load(config, await synced_templates(runtime.store, config))
            where = "the configured store: the contact and its runs are kept and counted"
        else:
            books = await _Books.load(config, await _configured_templates(config))
            store = await stack.enter_async_context(throwaway_store(None))
            await store.setup()
            mode = _Throwaway(config, store, urn.split(":", 1)[0], books)
            stack.push_async_callback(mode.webhooks.close)
            if _no_flow(mode.registry, mode.report.problems, flow_id):
                return 1
            where = "a throwaway store: nothing is kept, nothing is delivered"
        contact, created = await mode.store.contact_for_urn(
            urn, name, mode.now(), fields=dict(fields or {})
        )
        chat = _Chat(mode, books, contact["uuid"], flow_id, out, inp)
        if not created:  # --live: a contact of earlier sessions
            await chat.skip_history()

            def change(record: dict[str, Any]) -> dict[str, Any]:
                record["name"] = name
                record["fields"] = {**(record.get("fields") or {}), **(fields or {})}
                return record

            await mode.store.update_contacts([contact["uuid"]], change, mode.now())
        chat.say(f"chatting with {flow_id} as {name} ({urn}) on {where}")
        chat.say(f"({HELP})")
        return await chat.run()
    return 0  # pragma: no cover - the stack does not swallow exceptions
