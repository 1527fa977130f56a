"""``chasqui sandbox``: the WhatsApp Graph API sandbox on its own (docs/sandbox.md).

A command of this channel type (``Channel.commands``): ``chasqui`` adds it without naming
WhatsApp. The sandbox package is imported only when the command runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

from channels.protocol import Command, CommandContext, is_loopback

SANDBOX_LOOPBACK = (
    "refusing to serve the WhatsApp sandbox on {}: its /_fake controls inject signed inbound "
    "messages from any number, so it listens on loopback only (127.0.0.1, ::1, localhost)"
)


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8090)
    p.add_argument(
        "--webhook-url",
        default="http://127.0.0.1:8080/webhooks/whatsapp/whatsapp",
        help="where it posts signed webhooks",
    )
    p.add_argument("--max-mps", type=float, default=80.0, help="throughput per number; 0: off")
    p.add_argument("--no-pair-rate", action="store_true", help="no per-recipient pair rate")
    p.add_argument("--no-statuses", action="store_true", help="no status webhooks")
    p.add_argument(
        "--record-limit",
        type=int,
        default=10_000,
        help="sends and webhooks kept for /_fake/sent and /_fake/webhooks",
    )
    p.add_argument(
        "--admin-token",
        help="the token its /_fake controls require (default: the server's, as `chasqui serve` "
        "reads it: server.admin_token, else var/admin-token, generated if missing)",
    )


def _run(args: argparse.Namespace, context: CommandContext) -> int:
    from channels.whatsapp.sandbox import demo_config, run_sandbox

    if not is_loopback(args.host):
        print(SANDBOX_LOOPBACK.format(f"--host {args.host}"), file=sys.stderr)
        return 2
    if args.admin_token:
        token = args.admin_token
    else:  # the server's: one token for `chasqui serve` and `chasqui sandbox` beside it
        token, where = context.admin_token()
        print(f"its /_fake controls take the server's admin token ({where})")
    sandbox = demo_config(
        args.webhook_url,
        admin_token=token,
        max_mps=args.max_mps,
        pair_rate=not args.no_pair_rate,
        statuses=not args.no_statuses,
        record_limit=args.record_limit,
    )
    print(f"WhatsApp sandbox on http://{args.host}:{args.port} -> webhooks to {args.webhook_url}")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_sandbox(sandbox, args.host, args.port))
    return 0


SANDBOX = Command("sandbox", "run the WhatsApp Graph API sandbox on its own", _arguments, _run)
