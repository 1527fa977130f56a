"""``chasqui channels``: list the configured channels, or ``setup NAME`` one of them.

``setup`` tells the channel's provider where this server takes its webhooks
(``<server.public_url>/webhooks/<type>/<name>``, or ``--url``), through the channel protocol's
``register_webhook``: Telegram's ``setWebhook`` with the secret token and the updates we take.
A channel with nothing to register says so. Nothing here names a channel type.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from bot.core.config import Config, load_config
from channels.protocol import validate_channels


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("channels", help="list the channels, or register one's webhook (setup)")
    p.add_argument("action", choices=["list", "setup"])
    p.add_argument("name", nargs="?", help="the channel to set up")
    p.add_argument(
        "--url", help="the public URL of its webhook (default: server.public_url + its path)"
    )
    p.set_defaults(func=cmd_channels)


def webhook_url(config: Config, channel_type: str, name: str) -> str:
    return f"{config.server.url}/webhooks/{channel_type}/{name}"


def cmd_channels(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    validate_channels(config.channels)
    if args.action == "list":
        for name, section in config.channels.items():
            print(f"{name:<16} {section.type:<10} {webhook_url(config, section.type, name)}")
        return 0
    if not args.name or args.name not in config.channels:
        known = ", ".join(config.channels) or "none"
        print(f"name a configured channel to set up (channels: {known})", file=sys.stderr)
        return 2
    return asyncio.run(_setup(config, args.name, args.url))


async def _setup(config: Config, name: str, url: str | None) -> int:
    from bot.work.runtime import Runtime

    target = url or webhook_url(config, config.channels[name].type, name)
    if not target.startswith("https://"):
        print(
            f"note: {target} is not HTTPS; providers such as Telegram refuse it "
            "(set server.public_url or pass --url)",
            file=sys.stderr,
        )
    runtime = Runtime(config)
    await runtime.start(work=False)
    try:
        said = await runtime.channels[name].register_webhook(target)
    except ValueError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    finally:
        await runtime.stop()
    print(f"{name}: {said or 'nothing to register: this channel takes no setup'}")
    return 0
