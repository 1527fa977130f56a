"""Time as the runtime sees it; tests and ``chasqui test`` move it forward by hand."""

from __future__ import annotations

import math
import time


class Clock:
    def now(self) -> float:
        return time.time()


class ManualClock(Clock):
    def __init__(self, start: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds


def no_later_than(claimed: float, received: float) -> float:
    """A sender's claimed time for something that reached us at ``received``: kept when it is
    earlier, else ``received`` (nothing is sent from the future; a 1e20 timestamp would keep a
    contact's 24-hour window open forever). Not a finite number: ``received``."""
    return claimed if math.isfinite(claimed) and claimed < received else received
