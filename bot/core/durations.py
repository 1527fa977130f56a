"""Durations as flow authors write them: ``30s``, ``5m``, ``24h``, ``3d``, ``1w``, ``1h30m``.

:data:`Duration` is the one type for a duration field of a pydantic model (flow files, node
kinds, config sections, channel settings): the text as written, refused at load when it is not a
duration, read as seconds with :func:`parse_duration` where it is used.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+)\s*([smhdw])")
_WHOLE = re.compile(r"^\s*(?:\d+\s*[smhdw]\s*)+$")


def parse_duration(text: str | int) -> int:
    """Seconds in ``text``; raises ValueError with a message an author understands."""
    if isinstance(text, bool):
        raise ValueError(f"bad duration {text!r}: write e.g. 30s, 5m, 24h, 3d")
    if isinstance(text, int):
        if text <= 0:
            raise ValueError(f"bad duration {text!r}: must be positive")
        return text
    if not isinstance(text, str) or not _WHOLE.match(text):
        raise ValueError(f"bad duration {text!r}: write e.g. 30s, 5m, 24h, 3d")
    seconds = sum(int(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(text))
    if seconds <= 0:
        raise ValueError(f"bad duration {text!r}: must be positive")
    return seconds


def _checked(text: str) -> str:
    parse_duration(text)
    return text


# A duration as written (``"5m"``), checked when the model is validated.
Duration = Annotated[str, AfterValidator(_checked)]
