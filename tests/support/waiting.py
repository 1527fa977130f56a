"""Wait for a condition by polling it against a deadline: never a bare sleep racing a TTL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def wait_for(
    check: Callable[[], Awaitable[T]],
    what: str = "condition",
    timeout: float = 5.0,
    every: float = 0.02,
) -> T:
    """Await ``check`` until it returns something truthy and return that; fail after
    ``timeout`` seconds, saying what was awaited and what was last seen."""
    give_up = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > give_up:
            raise AssertionError(f"timed out waiting for {what}; last saw {value!r}")
        await asyncio.sleep(every)


def until(
    check: Callable[[], T], what: str = "condition", timeout: float = 20.0, every: float = 0.1
) -> T:
    """Blocking :func:`wait_for`, for tests that drive a subprocess."""
    give_up = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > give_up:
            raise AssertionError(f"timed out waiting for {what}; last saw {value!r}")
        time.sleep(every)
