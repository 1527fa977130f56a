"""The one JSON reader for what comes from outside: request bodies, webhooks, webhook answers.

Python's ``json.loads`` accepts what JSON does not (``NaN``, ``Infinity``, and ``1e400`` read as
infinity): such a value is stored, then served back as invalid JSON. And nesting deeper than the
interpreter's recursion limit raises ``RecursionError``, which nothing expects (a 500). Here both
are a ``ValueError`` saying so, like any other unreadable JSON.
"""

from __future__ import annotations

import json
import math
from typing import Any


class JsonRefused(ValueError):
    """Readable by Python, refused here: non-finite numbers, or nesting too deep."""


def _refuse_constant(name: str) -> Any:
    raise JsonRefused(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonRefused(f"{text} is too large for a number")
    return value


_DECODER = json.JSONDecoder(parse_float=_finite, parse_constant=_refuse_constant)


def loads(raw: str | bytes | bytearray) -> Any:
    """Parse JSON from outside; ``ValueError`` (a ``JSONDecodeError``, a ``UnicodeDecodeError``
    or a :class:`JsonRefused`) when it is not JSON we keep."""
    if isinstance(raw, bytes | bytearray):  # as json.loads does: UTF-8 (with or without BOM)
        text = raw.decode(json.detect_encoding(raw), "surrogatepass")  # or UTF-16/32
    else:
        text = raw
    try:
        return _DECODER.decode(text)
    except RecursionError:
        raise JsonRefused("nested too deeply") from None
