"""The arguments of ``chasqui contacts import|list|show|history`` and ``chasqui runs``.

Apart from :mod:`bot.cli.contacts` (which imports the API's services, aiohttp and all) so that
building the parser of every ``chasqui`` command stays cheap: that module is imported only when
one of these commands runs.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from typing import Any

from bot.core.config import Config


def _run(command: str, config: Config, args: argparse.Namespace) -> int:
    code: int = getattr(importlib.import_module("bot.cli.contacts"), command)(config, args)
    return code


def add_parsers(sub: Any, config_of: Callable[[argparse.Namespace], Config]) -> None:
    """The ``contacts`` and ``runs`` commands of ``chasqui``."""
    p = sub.add_parser("contacts", help="import, list, search and look at contacts")
    verbs = p.add_subparsers(dest="action", required=True)
    v = verbs.add_parser("import", help="import contacts from a CSV file")
    v.add_argument(
        "file", help="CSV: urn (or phone), urn:<scheme>, name, language, field:<key>, group(s)"
    )
    v.add_argument("--group", action="append", default=[], help="also add every row to G")
    for verb, what in (
        ("list", "contacts, newest first, or those a search finds"),
        ("export", "the contacts a list finds, all of them, as CSV on stdout"),
    ):
        v = verbs.add_parser(verb, help=what)
        v.add_argument("-s", "--search", help="words of the name, a field's value, or a number")
        v.add_argument("--group", help="members of this group (name or uuid)")
        v.add_argument("--status", choices=["active", "opted_out", "blocked"])
        v.add_argument(
            "--in-flow",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="only contacts in a flow now (--no-in-flow: in none)",
        )
        if verb == "list":
            v.add_argument("--limit", type=int, default=50)
            v.add_argument("--cursor", help="where the previous page said to go on")
    for verb, what in (("show", "a contact: fields, groups, window, runs"), ("history", "")):
        v = verbs.add_parser(verb, help=what or "a contact's messages and runs, oldest first")
        v.add_argument("contact", help="uuid, URN (whatsapp:+51...), or words finding one")
    p.set_defaults(func=lambda args: _run("cmd_contacts", config_of(args), args))

    p = sub.add_parser("runs", help="runs across contacts, newest first")
    p.add_argument("--flow", help="only this flow's runs")
    p.add_argument(
        "--status", choices=["active", "waiting", "completed", "interrupted", "expired", "failed"]
    )
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--cursor", help="where the previous page said to go on")
    p.set_defaults(func=lambda args: _run("cmd_runs", config_of(args), args))
