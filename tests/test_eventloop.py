"""``chasqui serve`` runs on uvloop's loop when uvloop is installed, else on asyncio's own, and
freezes the objects of its startup out of the garbage collector's sight once it listens."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from bot.core import eventloop


async def _loop_type() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_uvloop_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("uvloop")
    monkeypatch.delenv("CHASQUI_EVENT_LOOP", raising=False)
    assert eventloop.run(_loop_type()).startswith("uvloop")


def test_asyncio_when_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHASQUI_EVENT_LOOP", "asyncio")
    assert eventloop.loop_factory() is None
    assert eventloop.run(_loop_type()).startswith("asyncio")


def test_asyncio_when_uvloop_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHASQUI_EVENT_LOOP", raising=False)
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop: ImportError
    assert eventloop.loop_factory() is None
    assert eventloop.run(_loop_type()).startswith("asyncio")


SERVE = """
import asyncio, gc, os, signal
from aiohttp import web
from bot.api.serving import run

def ready():
    loop = type(asyncio.get_running_loop()).__module__
    print(loop, gc.get_freeze_count(), flush=True)
    os.kill(os.getpid(), signal.SIGTERM)

run(web.Application(), host="127.0.0.1", port=0, read_timeout=5, on_ready=ready)
print("stopped", flush=True)
"""


def test_chasqui_serve_freezes_its_startup_objects_once_it_listens() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SERVE], capture_output=True, text=True, timeout=30, check=True
    )
    loop, frozen, stopped = done.stdout.split()
    assert loop.startswith("uvloop" if eventloop.loop_factory() else "asyncio")
    assert int(frozen) > 10_000  # modules, aiohttp, the app: all out of the collector's sight
    assert stopped == "stopped"
