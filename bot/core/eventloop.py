"""The event loop the long-running commands run on: uvloop's when it is installed, else asyncio's.

uvloop (libuv underneath) does the same work as asyncio's own loop with less Python per event:
socket writes, timers, the selector. Measured on ``chasqui serve`` answering WhatsApp text
webhooks (bench/README.md, issue 12, "process CPU"), it cuts the process's CPU per message.
It has wheels for Linux and macOS only, so it is optional: where it is missing (Windows, other
interpreters) the same code runs on asyncio's loop, which is also what the tests' own loops are.

``CHASQUI_EVENT_LOOP=asyncio`` forces asyncio's loop even where uvloop is installed (to compare
the two, or to rule uvloop out when chasing a bug).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's ``new_event_loop`` when installed and not turned off; None: asyncio's."""
    if os.environ.get("CHASQUI_EVENT_LOOP", "").strip().lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on the loop :func:`loop_factory` picks."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
