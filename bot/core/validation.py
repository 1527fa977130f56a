"""One way to turn a pydantic ``ValidationError`` into text a person acts on.

Flow files, the configuration and channel settings all validate with pydantic; each names the
place (``nodes[2].send_message.text``, ``engine.loop_window``) and says what is wrong in the
words of its readers: a flow author reads "unknown key", an operator "unknown setting".
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import ValidationError
from pydantic_core import ErrorDetails


def location(loc: Iterable[str | int]) -> str:
    """``("nodes", 3, "text")`` -> ``nodes[3].text``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def message(
    err: ErrorDetails,
    *,
    unknown: str | None = "unknown key",
    missing: str | None = "required, but missing",
    plain: bool = True,
) -> str:
    """What is wrong. ``unknown`` / ``missing`` replace pydantic's words for an extra or a
    missing key (None keeps them); ``plain`` drops its "Value error, " prefix."""
    if err["type"] == "extra_forbidden" and unknown is not None:
        return unknown
    if err["type"] == "missing" and missing is not None:
        return missing
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ").removeprefix("Assertion failed, ") if plain else msg


def summary(
    exc: ValidationError,
    *,
    root: str = "",
    unknown: str | None = "unknown key",
    missing: str | None = "required, but missing",
    plain: bool = True,
) -> str:
    """Every error on one line, ``place: what; place: what``; ``root`` names the whole object."""
    return "; ".join(
        f"{location(err['loc']) or root}: "
        + message(err, unknown=unknown, missing=missing, plain=plain)
        for err in exc.errors()
    )
