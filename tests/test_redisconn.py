"""The connections of bot/store/redisconn.py write a command without redis-py's per-write
``asyncio.wait_for`` when the socket takes it at once, and its pool hands a connection out (and
takes it back) in one step when nobody waits; what that must not change: replies, big commands
the socket cannot take at once, a connection the server closed, a Redis that hangs, and the
pool's bound on connections with callers waiting their turn."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.store.redisconn import connect


async def test_replies_pipelines_and_a_command_too_big_for_one_write(redis: Redis) -> None:
    client = connect(_url(redis))
    try:
        big = b"x" * (8 << 20)  # 8 MiB: more than the socket takes at once, so it is drained
        assert await client.set("big", big)
        assert await client.strlen("big") == len(big)
        values = await asyncio.gather(*(client.incr("n") for _ in range(200)))
        assert sorted(values) == list(range(1, 201))
        async with client.pipeline(transaction=False) as pipe:
            pipe.set("a", "1").get("a").eval("return ARGV[1]", 0, "lua")
            assert await pipe.execute() == [True, b"1", b"lua"]
    finally:
        await client.aclose()


async def test_a_connection_the_server_closed_is_replaced(redis: Redis) -> None:
    client = connect(_url(redis), max_connections=1)
    try:
        assert await client.set("k", "v")
        victim = await client.client_id()
        assert await redis.execute_command("CLIENT", "KILL", "ID", victim) == 1
        assert await client.get("k") == b"v"  # reconnected, not an error, not a hang
    finally:
        await client.aclose()


async def test_a_redis_that_does_not_answer_times_the_read_out(redis: Redis) -> None:
    client = connect(_url(redis), socket_timeout=0.3, retry=Retry(NoBackoff(), 0))
    try:
        assert await client.ping()
        await redis.execute_command("CLIENT", "PAUSE", "2000", "ALL")
        try:
            began = time.monotonic()
            with pytest.raises(RedisTimeoutError):
                await client.get("k")
            assert time.monotonic() - began < 1.5
        finally:
            await redis.execute_command("CLIENT", "UNPAUSE")
    finally:
        await client.aclose()


async def test_more_callers_than_connections_wait_their_turn(redis: Redis) -> None:
    client = connect(_url(redis), max_connections=3, timeout=10)
    pool = client.connection_pool
    most = 0

    async def incr_and_count() -> int:
        nonlocal most
        value: int = await client.incr("n")
        most = max(most, len(pool._in_use_connections) + len(pool._available_connections))  # type: ignore[attr-defined]
        return value

    try:
        for _ in range(3):  # rounds: the pool goes from busy (waiters) to quiet and back
            await asyncio.gather(*(incr_and_count() for _ in range(150)))
        assert await client.get("n") == b"450"
        assert most <= 3
        assert len(pool._in_use_connections) == 0  # type: ignore[attr-defined]
    finally:
        await client.aclose()


def _url(redis: Redis) -> str:
    kwargs = redis.connection_pool.connection_kwargs
    return f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs.get('db', 0)}"
