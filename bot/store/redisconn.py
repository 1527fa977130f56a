"""Redis connections that pack commands with hiredis (C) instead of redis-py's pure Python.

Measured here: packing one commit script call (70 arguments) takes ~70 µs in redis-py's asyncio
connection and ~10 µs with ``hiredis.pack_command`` -- the largest single cost of applying an
event (see bench/README.md), so we plug ``hiredis.pack_command`` into the asyncio connection
classes.

Still needed with redis-py 8.2 (checked in its source): its asyncio connection does pack with
hiredis when hiredis is installed (``HiredisRespSerializer``; 8.1 and earlier do not), but it
first encodes every argument in Python (``Encoder.encode``, ~80 % of its time), which hiredis
does itself. Measured on a commit-sized call (72 arguments, same busy 2-core machine, 2 runs):
205-233 µs there, 22-26 µs here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import hiredis
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.store.embedded import EmbeddedValkey
from bot.store.scripts import ChasquiRedis, ScriptLoading

# Redis cannot be reached (down, restarting, loading its AOF): worth waiting for, unlike a
# script error or a wrong type, which would fail the same way again.
UNREACHABLE = (RedisConnectionError, RedisTimeoutError)
T = TypeVar("T")
log = logging.getLogger("chasqui.redis")


async def once_reachable(what: str, call: Callable[[], Awaitable[T]], within: float) -> T:
    """``call()``, tried again (0.1 s, doubling to 2 s) while Redis cannot be reached, for up
    to ``within`` seconds; then the last error is raised. Only for calls safe to repeat."""
    give_up = time.monotonic() + within
    pause = 0.1
    failed = False
    while True:
        try:
            result = await call()
        except UNREACHABLE as exc:
            if time.monotonic() + pause > give_up:
                raise
            if not failed:  # one line for the outage, not one per attempt
                log.warning("%s: Redis unreachable (%s); trying again for %.0fs", what, exc, within)
                failed = True
            await asyncio.sleep(pause)
            pause = min(pause * 2, 2.0)
        else:
            if failed:
                log.warning("%s: Redis is back", what)
            return result


class _HiredisPacking:
    def pack_command(self, *args: Any) -> list[bytes]:
        first = args[0]
        splits = first.split() if isinstance(first, str | bytes) else [first]
        if len(splits) > 1:  # "CONFIG GET" and friends: one word per argument
            args = tuple(splits) + args[1:]
        return [hiredis.pack_command(args)]  # str, bytes, int and float: all we ever send

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        """redis-py's send, without its per-write ``asyncio.wait_for`` when the write is done
        at once.

        redis-py wraps every write in ``asyncio.wait_for(..., socket_timeout)``: a new task,
        a timer and a future per command, although a command of a few hundred bytes leaves in
        the socket's ``send`` and ``drain`` has nothing to wait for. Here a connected socket
        with nothing buffered is written directly; only when the write did not all leave (the
        transport buffered some of it, or the connection is closing) do we wait the usual
        way, with the timeout and redis-py's error handling. A PING due for the health check,
        a lost connection, a reader holding an error: all go the usual way as well. The read
        of the reply keeps its ``socket_timeout``, which is what notices a Redis that hangs.
        """
        writer, reader = self._writer, self._reader  # type: ignore[attr-defined]
        if (
            not isinstance(command, list)
            or writer is None
            or reader is None
            or writer.transport.is_closing()
            or writer.transport.get_write_buffer_size()
            or reader.exception() is not None
            or (check_health and self._health_due())
        ):
            await super().send_packed_command(command, check_health)  # type: ignore[misc]
            return
        writer.writelines(command)
        if writer.transport.is_closing() or writer.transport.get_write_buffer_size():
            await super().send_packed_command([], False)  # type: ignore[misc]  # drain, timed

    def _health_due(self) -> bool:
        interval = self.health_check_interval  # type: ignore[attr-defined]
        return bool(interval) and asyncio.get_running_loop().time() > self.next_health_check  # type: ignore[attr-defined]


class FastConnection(ScriptLoading, _HiredisPacking, Connection):
    pass


class FastUnixConnection(ScriptLoading, _HiredisPacking, UnixDomainSocketConnection):
    pass


class FastSSLConnection(ScriptLoading, _HiredisPacking, SSLConnection):
    pass


_FAST: dict[type[Any], type[Any]] = {
    Connection: FastConnection,
    UnixDomainSocketConnection: FastUnixConnection,
    SSLConnection: FastSSLConnection,
}


class QuickPool(BlockingConnectionPool):
    """redis-py's blocking pool, with a short way in and out when nobody waits.

    Taking a connection from redis-py 8.2's pool costs a ``Condition``, an ``asyncio.timeout``,
    a ``Lock`` and six metrics calls (``record_connection_count``...), and giving it back a
    ``Condition``, a ``Lock``, the metrics and an event dispatch: about a third of the client's
    CPU per command (cProfile, a GET loop). When an idle connection is there, nobody waits
    for one and nobody holds the pool, there is nothing to wait for or to wake: we take it
    (and give it back) in one step -- what the lock would have guarded, done with no await in
    between -- still checked by ``ensure_connection`` (connected, no unread data) as
    redis-py does. Everything else -- no idle connection, waiters, a
    connection marked for reconnection -- goes redis-py's way. Nothing here awaits between
    the checks and the take, so no other task can come in between (one event loop). The
    metrics skipped are OpenTelemetry's, which we do not turn on.
    """

    def _quiet(self) -> bool:
        """Nobody holds the pool (its lock, its condition) or waits for a connection; no
        maintenance (re-authentication, a server handover) under way."""
        condition = self._condition
        return not (
            condition.locked()
            or getattr(condition, "_waiters", None)
            or self._lock.locked()
            or getattr(self, "_in_maintenance", False)
        )

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if not (args or kwargs) and self._available_connections and self._quiet():
            connection = self._available_connections.pop()
            self._in_use_connections.add(connection)
            try:
                await self.ensure_connection(connection)
            except BaseException:
                await self.release(connection)
                raise
            return connection
        return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]

    async def release(self, connection: Any) -> None:
        if (
            self._quiet()
            and not connection.should_reconnect()
            and getattr(connection, "_re_auth_token", None) is None  # a re-AUTH due on release
            and connection in self._in_use_connections
        ):
            self._in_use_connections.remove(connection)
            self._available_connections.append(connection)
            return
        await super().release(connection)


def connect(url: str, **kwargs: Any) -> Redis:
    """``Redis.from_url`` with hiredis packing (bytes replies unless told otherwise), our
    scripts loaded on every connection and sent as bare EVALSHA (bot/store/scripts.py).

    The pool makes a caller wait for a free connection (up to 20 s) instead of raising
    ``MaxConnectionsError`` at the 101st concurrent command: under a burst of webhooks that
    error became 503s and failed worker batches (left to the 60 s reclaim).
    """
    kwargs = {"max_connections": 128, "timeout": 20, **kwargs}
    pool = QuickPool.from_url(url, **kwargs)
    pool.connection_class = _FAST.get(pool.connection_class, pool.connection_class)
    return ChasquiRedis.from_pool(pool)


def has_embedded_data(data_dir: Path) -> bool:
    """Whether an embedded Valkey has kept data in ``data_dir`` (its append-only files)."""
    return (data_dir / "appendonlydir").exists()


class Connector:
    """Redis at ``url``; when ``url`` is empty, a private Valkey kept in ``data_dir``, started
    by :meth:`open` and stopped by :meth:`close`. The one way a command gets its Redis.

    ``port``: the embedded server's (None: a unix socket in ``data_dir``; 0: a free TCP port);
    ``options`` go to :func:`connect`.
    """

    def __init__(self, url: str, data_dir: Path, *, port: int | None = None, **options: Any):
        self.url, self.data_dir, self.port, self.options = url, data_dir, port, options
        self.embedded: EmbeddedValkey | None = None
        self.redis: Redis | None = None

    async def open(self) -> Redis:
        url = self.url
        if not url:
            self.embedded = EmbeddedValkey(self.data_dir, port=self.port)
            url = await self.embedded.start()
        self.redis = connect(url, **self.options)
        return self.redis

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()
            self.redis = None
        if self.embedded is not None:
            await self.embedded.stop()
            self.embedded = None

    async def __aenter__(self) -> Redis:
        return await self.open()

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
