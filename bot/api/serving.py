"""Serving the app over HTTP: aiohttp's runner, with a read deadline of our own.

aiohttp's server has no timeout for reading a request: a client that trickles one header line
every few seconds, or one body byte every few seconds, holds its connection (and a slot of the
server's attention) for as long as it likes -- slowloris, on the one endpoint that must face the
internet (the channel webhooks). Each connection here therefore has one deadline, armed only
while the *client* owes us bytes:

- **the request head**: from the connection's first moment, and from the first byte of each
  later request on a kept-alive connection, the head (request line and headers) must be complete
  within ``read_timeout``. Progress does not extend it: that is what a slowloris client makes.
- **the body**: once the head is in, each chunk of the body must follow the previous one within
  ``read_timeout`` (a stall, not a total: a big upload on a slow line is fine while it moves).
  While we have stopped reading ourselves (the handler has not caught up), the client is not
  stalling and the clock waits.

Past the deadline the connection is closed and one INFO line says why. An idle kept-alive
connection (between requests) is aiohttp's keep-alive timeout's business, not ours.

The deadline is set in ``server.read_timeout`` (default 15 s). In production, put a reverse proxy
(nginx, Caddy, a cloud load balancer) in front anyway: see docs/operations.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler

from bot.core import eventloop

log = logging.getLogger("chasqui.server")


class _GuardedHandler(RequestHandler):
    """aiohttp's per-connection protocol, plus the read deadline described above."""

    def __init__(self, manager: web.Server, *, read_timeout: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._read_timeout = read_timeout
        self._deadline: asyncio.TimerHandle | None = None
        self._body: StreamReader | None = None  # the body we are waiting for, if any

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm(restart=False)  # a new connection owes us a request head

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        self._body = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        heads = self._request_count
        super().data_received(data)
        if self._upgraded or self._payload_parser is not None or self.transport is None:
            self._disarm()  # a websocket, or closed meanwhile: not HTTP requests any more
            return
        if self._request_count > heads:  # a head is complete: now its body, if it has one
            self._disarm()
            self._body = self._messages[-1][1] if self._messages else None
        if self._body is not None:
            if self._body.is_eof():
                self._body = None
                self._disarm()
            else:
                self._arm(restart=True)  # the body moved: a fresh stall deadline
        elif self._request_count == heads:
            self._arm(restart=False)  # part of a head: its clock runs from its first byte

    def _arm(self, *, restart: bool) -> None:
        if self._deadline is not None:
            if not restart:
                return
            self._deadline.cancel()
        self._deadline = self._loop.call_later(self._read_timeout, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self.transport is None:
            return
        if self._body is not None and self._reading_paused:
            self._arm(restart=True)  # we stopped reading, not the client
            return
        what = "the request body stalled" if self._body is not None else "no complete request head"
        peer = self.transport.get_extra_info("peername")
        log.info(
            "closed the connection from %s: %s for %gs (server.read_timeout)",
            peer[0] if isinstance(peer, tuple) else peer or "?",
            what,
            self._read_timeout,
        )
        self.force_close()


class _GuardedServer(web.Server):
    """aiohttp's protocol factory, making guarded protocols."""

    def __init__(self, plain: web.Server, read_timeout: float) -> None:
        super().__init__(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=plain._loop,
            **plain._kwargs,
        )
        self._read_timeout = read_timeout

    def __call__(self) -> RequestHandler:
        return _GuardedHandler(
            self, loop=self._loop, read_timeout=self._read_timeout, **self._kwargs
        )


class GuardedRunner(web.AppRunner):
    """An ``AppRunner`` whose connections have the read deadline."""

    def __init__(self, app: web.Application, *, read_timeout: float, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._read_timeout = read_timeout

    async def _make_server(self) -> web.Server:
        return _GuardedServer(await super()._make_server(), self._read_timeout)


class CannotListen(Exception):
    """The address to serve on cannot be had (taken by another process, or not allowed)."""


async def serve(
    app: web.Application,
    *,
    host: str,
    port: int,
    read_timeout: float,
    reuse_port: bool = False,
    access_log: logging.Logger | None = None,
    handle_signals: bool = False,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Serve ``app`` until cancelled (or, with ``handle_signals``, until SIGINT/SIGTERM);
    ``on_ready`` is called once it listens."""
    runner = GuardedRunner(
        app, read_timeout=read_timeout, access_log=access_log, handle_signals=handle_signals
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None)
        try:
            await site.start()
        except OSError as exc:  # EADDRINUSE, EACCES, EADDRNOTAVAIL: the operator's to fix
            raise CannotListen(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        log.info("serving on %s", site.name)
        if on_ready is not None:
            on_ready()
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def freeze_startup_objects() -> None:
    """Collect once, then move every object alive (modules, flows, the app, its runtime) out
    of the garbage collector's sight: ``gc.freeze()``.

    Those ~85,000 objects live as long as the process, yet each full collection walked them
    all: on a busy server one every few thousand messages, ~60 ms of CPU and a pause of up to
    ~200 ms that every request in flight waited out (measured with ``gc.callbacks``, see
    bench/README.md, issue 12). Frozen, a full collection walks only what was made since.
    """
    gc.collect()
    gc.freeze()


def run(app: web.Application, *, on_ready: Callable[[], None] | None = None, **kwargs: Any) -> None:
    """``serve`` in a new event loop (uvloop's when installed: bot/core/eventloop.py) until
    SIGINT or SIGTERM: ``chasqui serve``. Once it listens, the objects of the startup are
    frozen (:func:`freeze_startup_objects`)."""

    def ready() -> None:
        freeze_startup_objects()
        if on_ready is not None:
            on_ready()

    with contextlib.suppress(web.GracefulExit, KeyboardInterrupt):
        eventloop.run(serve(app, handle_signals=True, on_ready=ready, **kwargs))
