"""The ``chasqui`` command: serve, check, test, simulate, channels, ...

Every command takes ``--config PATH`` (default ``$CHASQUI_CONFIG`` or ``./config.toml``).
Exit codes: 0 fine, 1 problems found (invalid flows, failing tests), 2 usage or config error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from bot.cli import channels as channels_cli
from bot.core.config import Config, ConfigError, load_config
from bot.flow.files import check_references, flow_files, load_folder, trigger_conflicts
from bot.work.flowcheck import (
    capability_warnings,
    stop_word_warnings,
    template_problems,
    window_warnings,
)
from channels.protocol import Command, channel_class, channel_types, validate_channels

DESCRIPTION = "Chasqui: conversational flows kept in git, run on Redis."


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config)


def cmd_check(args: argparse.Namespace) -> int:
    config = _config(args)
    folder = Path(args.path) if args.path else config.resolve(config.flows.path)
    if not folder.exists():
        print(f"{folder}: no such file or folder", file=sys.stderr)
        return 2
    flows, problems = load_folder(folder, set(config.channels))
    if folder.is_file():  # a single file: enter_flow targets are looked up beside it
        siblings, _ = load_folder(folder.parent, set(config.channels))
        problems = [p for p in problems if "unknown flow" not in p.message]
        problems += [p for p in check_references({**siblings, **flows}) if p.file == str(folder)]
        others = {k: f for k, f in siblings.items() if k not in flows}  # this file claims last
        clashes = trigger_conflicts({**others, **flows})
        problems += [p for _, _, p in clashes if p.file == str(folder)]
    templates = asyncio.run(template_problems(flows, config)) if not problems else []
    if templates is None:
        print("templates not checked: none synced yet (chasqui templates sync)", file=sys.stderr)
    problems += templates or []
    for problem in problems:
        print(problem)
    from bot.work.runtime import opt_out_of

    warnings = window_warnings(flows, config) + capability_warnings(flows, config)
    for warning in warnings + stop_word_warnings(flows, opt_out_of(config)):
        print(warning)
    total = len(flow_files(folder))
    if problems:
        print(f"\n{len(problems)} problem(s) in {total} flow file(s)", file=sys.stderr)
        return 1
    print(f"{total} flow file(s) OK: {', '.join(sorted(flows))}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from bot.api.serving import CannotListen
    from bot.work.runtime import Runtime, admin_token

    config = _config(args)
    validate_channels(config.channels)
    runtime = Runtime(config)
    report = runtime.load_flows()
    if report.problems:
        for problem in report.problems:
            print(problem, file=sys.stderr)
        print("refusing to start: fix the flows above (chasqui check)", file=sys.stderr)
        return 1
    logging.info("flows loaded: %s", ", ".join(sorted(runtime.registry.flows)) or "none")
    processes = config.server.processes
    for channel in config.channels.values():
        refused = channel_class(channel.type).serving_problem(
            channel, host=config.server.host, processes=processes
        )
        if refused:
            print(refused, file=sys.stderr)
            return 2
    admin_token(config)  # once, before the processes: they all read the same token
    children = [pid for pid in (_fork_server(config, args) for _ in range(processes - 1)) if pid]
    try:
        _serve(config, runtime, args, reuse_port=processes > 1)
    except CannotListen as exc:
        print(
            f"error: {exc}. Is another `chasqui serve` running? Stop it, or set server.port "
            "in the config (or CHASQUI_SERVER__PORT).",
            file=sys.stderr,
        )
        return 2
    finally:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid in children:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
    return 0


def _fork_server(config: Config, args: argparse.Namespace) -> int:
    """Another serving process on the same port (SO_REUSEPORT: the kernel spreads the
    connections) and the same Redis (the work streams spread the work). Returns the child's
    pid in the parent; the child serves until told to stop, then exits."""
    from bot.work.runtime import Runtime

    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        runtime = Runtime(config)
        runtime.load_flows()
        _serve(config, runtime, args, reuse_port=True, announce=False)
    except BaseException:
        logging.exception("serving process failed")
        code = 1
    os._exit(code)


def _serve(
    config: Config,
    runtime: Any,
    args: argparse.Namespace,
    *,
    reuse_port: bool,
    announce: bool = True,
) -> None:
    from bot.api.app import create_app
    from bot.api.serving import run
    from bot.cli.where import where

    app = create_app(config, runtime)
    run(
        app,
        on_ready=(lambda: print(where(config, app), flush=True)) if announce else None,
        access_log=logging.getLogger("aiohttp.access") if args.verbose else None,
        host=config.server.host,
        port=config.server.port,
        reuse_port=reuse_port,
        read_timeout=config.server.read_timeout,
    )


def cmd_test(args: argparse.Namespace) -> int:
    from bot.convtest.runner import run_cli

    return run_cli(_config(args), args)


def cmd_templates(args: argparse.Namespace) -> int:
    from bot.work.runtime import Runtime

    config = _config(args)
    if args.action == "show":  # through the running server, like Studio's template page
        from bot.cli.templates import show

        if not args.name:
            print("error: name the template: chasqui templates show NAME", file=sys.stderr)
            return 2
        return show(config, args.name)
    validate_channels(config.channels)

    async def run() -> int:
        runtime = Runtime(config)
        await runtime.start(work=False)
        try:
            code = 0
            for name, channel in runtime.channels.items():
                if args.action == "sync":
                    try:
                        count = await channel.sync_templates()
                    except Exception as exc:
                        print(f"{name}: {exc}", file=sys.stderr)
                        code = 1
                        continue
                    if count is not None:
                        print(f"{name}: {count} template(s) synced")
                for t in await runtime.store.templates(name):
                    if args.action == "list":
                        reason = f" ({t['rejected_reason']})" if t.get("rejected_reason") else ""
                        print(
                            f"{name}  {t['name']:<28} {t['language']:<6} "
                            f"{t.get('status', '?'):<10} {t.get('category', '')}{reason}"
                        )
            return code
        finally:
            await runtime.stop()

    return asyncio.run(run())


class _CommandContext:
    """What a channel type's command may ask of ``chasqui`` (``channels.protocol``)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args

    def config(self) -> Config:
        return _config(self.args)

    def admin_token(self) -> tuple[str, str]:
        from bot.work.runtime import admin_token

        config = self.config()
        where = str(config.resolve(config.redis.data_dir) / "admin-token")
        if config.server.admin_token.get_secret_value():
            where = "server.admin_token"
        return admin_token(config), where


def _channel_command(command: Command) -> Any:
    def run(args: argparse.Namespace) -> int:
        return command.run(args, _CommandContext(args))

    return run


def cmd_start(args: argparse.Namespace) -> int:
    from bot.cli.starts import cmd_start as start

    return start(_config(args), args)


def cmd_starts(args: argparse.Namespace) -> int:
    from bot.cli.starts import cmd_starts as starts

    return starts(_config(args), args)


def cmd_flows(args: argparse.Namespace) -> int:
    from bot.cli.flows import cmd_flows as flows

    return flows(_config(args), args)


def cmd_simulate(args: argparse.Namespace) -> int:
    from bot.convtest.simulate import simulate

    fields = dict(args.field or [])
    return asyncio.run(
        simulate(
            _config(args), args.flow, name=args.name, urn=args.urn, fields=fields, live=args.live
        )
    )


def _field(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: write KEY=VALUE, e.g. order_id=A-1")
    return key.strip(), value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chasqui", description=DESCRIPTION)
    parser.add_argument("--config", help="config file (default: $CHASQUI_CONFIG or config.toml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the server (embedded Valkey unless redis.url is set)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("check", help="validate flow files; exit 1 listing every problem")
    p.add_argument("path", nargs="?", help="a flow file or folder (default: the flows path)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("test", help="run the conversation tests in <flows>/tests")
    p.add_argument("paths", nargs="*", help="test files (default: all of <flows>/tests)")
    p.add_argument("-k", dest="match", help="only tests whose name contains this")
    p.set_defaults(func=cmd_test)

    p = sub.add_parser("templates", help="sync, list or show the channels' message templates")
    p.add_argument("action", choices=["sync", "list", "show"])
    p.add_argument("name", nargs="?", help="show: the template's name")
    p.set_defaults(func=cmd_templates)

    from bot.cli.flows import add_parser as add_flows

    add_flows(sub).set_defaults(func=cmd_flows)

    from bot.cli.contactargs import add_parsers as contacts_parsers

    contacts_parsers(sub, _config)  # contacts import|list|show|history, runs

    channels_cli.add_parser(sub)

    for type_name in channel_types():  # commands the channel types bring (`chasqui sandbox`)
        for command in channel_class(type_name).commands():
            p = sub.add_parser(command.name, help=command.help)
            command.arguments(p)
            p.set_defaults(func=_channel_command(command))

    p = sub.add_parser("start", help="send a flow to contacts and groups, and follow it")
    p.add_argument("flow", help="flow id")
    p.add_argument("--group", action="append", help="a group, by name or uuid (repeatable)")
    p.add_argument("--urn", action="append", help="a contact URN, created if new (repeatable)")
    p.add_argument("--contact", action="append", help="a contact uuid (repeatable)")
    p.add_argument("--param", action="append", help="key=value for @trigger.params")
    p.add_argument("--no-wait", action="store_true", help="print the start's uuid and return")
    p.add_argument(
        "--preview",
        action="store_true",
        help="say how many it would reach, who it would skip and why, the opening template and "
        "its problems; start nothing",
    )
    p.add_argument("--exclude-active", action="store_true", help="skip contacts in any run")
    p.add_argument(
        "--send-at",
        metavar="WHEN",
        help="schedule it: ISO datetime (UTC unless it says), unix seconds, or +2h from now",
    )
    p.add_argument(
        "--spread-over", metavar="DURATION", help="spread the sends over e.g. 30m, 2h, 1d"
    )
    p.set_defaults(func=cmd_start)

    p = sub.add_parser(
        "starts",
        help="list the starts; follow one (UUID); chasqui starts cancel|retry UUID",
    )
    p.add_argument(
        "target",
        nargs="*",
        metavar="[cancel|retry] UUID",
        help="the start to follow, cancel or retry (its failed contacts): its uuid or beginning",
    )
    p.add_argument("--failed", action="store_true", help="list its failed contacts, each with why")
    p.add_argument("--no-wait", action="store_true", help="retry: print the new start and return")
    p.set_defaults(func=cmd_starts)

    p = sub.add_parser(
        "simulate",
        help="chat with a flow in the terminal (on a throwaway store unless --live)",
    )
    p.add_argument("flow", help="flow id (the file name without .yaml)")
    p.add_argument("--name", default="Ana", help="the simulated contact's name")
    p.add_argument("--urn", help="the simulated contact's URN (default console:<name>)")
    p.add_argument(
        "--field",
        action="append",
        type=_field,
        metavar="KEY=VALUE",
        help="a contact field, for @fields.KEY (repeatable)",
    )
    p.add_argument(
        "--live",
        action="store_true",
        help="use the configured Redis and the real channels: the contact and its runs are "
        "kept and count in flow stats, and a whatsapp: URN is really sent to",
    )
    p.set_defaults(func=cmd_simulate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet = args.command in (
        "simulate",
        "test",
        "check",
        "templates",
        "flows",
        "start",
        "starts",
        "contacts",
        "channels",
        "runs",
    )
    level = logging.DEBUG if args.verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code
