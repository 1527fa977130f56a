"""Cursor paging shared by the list endpoints: opaque cursors and the ``limit`` parameter.

A cursor is the index member a page ended at, base64url-encoded so that clients treat it as
opaque; decoding checks it has the shape of a member of that index, so a made-up cursor is a
400, not a query with strange bounds.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping

from bot.errors import ApiError

MAX_PAGE = 500


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


def page_limit(query: Mapping[str, str], default: int = 50) -> int:
    try:
        limit = int(query.get("limit", str(default)))
    except ValueError:
        raise ApiError(400, "bad_request", "limit must be a number") from None
    if not 1 <= limit <= MAX_PAGE:
        raise ApiError(400, "bad_request", f"limit must be 1 to {MAX_PAGE}")
    return limit
