"""``chasqui serve`` runs on uvloop's loop when uvloop is installed, else on asyncio's own."""

from __future__ import annotations

import asyncio
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
