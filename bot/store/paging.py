"""Cursor paging shared by the list endpoints: opaque cursors and the ``limit`` parameter.

A cursor is the index member a page ended at, base64url-encoded so that clients treat it as
opaque; decoding checks it has the shape of a member of that index, so a made-up cursor is a
400, not a query with strange bounds.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from bot.core.errors import ApiError

MAX_PAGE = 500
MAX_SCANNED = 5000  # index entries one list request looks at before it answers with a cursor


def encode_cursor(member: str) -> str:
    return base64.urlsafe_b64encode(member.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, shape: re.Pattern[str]) -> str:
    try:
        member = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ApiError(400, "bad_request", "cursor is not one this API gave") from None
    if not shape.match(member):
        raise ApiError(400, "bad_request", "cursor is not one this API gave")
    return member


async def filtered_page(
    fetch: Callable[[str | None, int], Awaitable[Sequence[str]]],
    load: Callable[[Sequence[str]], Awaitable[Sequence[dict[str, Any] | None]]],
    after: str | None,
    limit: int,
) -> dict[str, Any]:
    """A page of an index walked in order from ``after``: ``fetch(after, n)`` gives the next
    members, ``load(members)`` the record of each (None: gone, or filtered out). Stops at
    ``limit`` records or MAX_SCANNED members, so a page may be short while ``next`` is set; a
    look-ahead makes the last page say it is the last (``next`` null)."""
    found: list[dict[str, Any]] = []
    scanned, last, exhausted = 0, after, False
    while len(found) < limit and scanned < MAX_SCANNED:
        members = await fetch(last, min(limit * 2, MAX_PAGE))
        if not members:
            exhausted = True
            break
        scanned += len(members)
        for member, record in zip(members, await load(members), strict=True):
            last = member
            if record is None:
                continue
            found.append(record)
            if len(found) == limit:
                break
    if not exhausted and last is not None and len(found) == limit:
        exhausted = not await fetch(last, 1)
    return {"items": found, "next": None if exhausted or last is None else encode_cursor(last)}
