"""Typed accessors for what the app holds: the runtime (store, registry, engine, channels,
worker) and the admin token. Set by :func:`bot.api.app.create_app`; read by every resource
module through these functions, so no module reaches into another for them."""

from __future__ import annotations

from aiohttp import web

from bot.store import Store
from bot.work.runtime import Runtime
from bot.work.starts import Starter

RUNTIME = web.AppKey("runtime", Runtime)
TOKEN = web.AppKey("token", str)


def runtime(request: web.Request) -> Runtime:
    return request.config_dict[RUNTIME]


def store(request: web.Request) -> Store:
    return request.config_dict[RUNTIME].store


def now(request: web.Request) -> float:
    return float(request.config_dict[RUNTIME].clock.now())


def starter(request: web.Request) -> Starter:
    worker = request.config_dict[RUNTIME].worker
    assert worker is not None, "runtime not started"
    return worker.starter
