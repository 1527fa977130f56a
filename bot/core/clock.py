"""Time as the runtime sees it; tests and ``chasqui test`` move it forward by hand."""

from __future__ import annotations

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
