"""Our scripts go out as bare EVALSHA, in pipelines too, and survive a lost script cache."""

from __future__ import annotations

from redis.asyncio import Redis

from bot.store import Store
from bot.store.redisconn import connect
from bot.store.scripts import all_sources, lua_source, sha_of


async def calls(redis: Redis, command: str) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def test_a_new_connection_has_every_script_loaded(valkey_url: str) -> None:
    plain = Redis.from_url(valkey_url)  # redis-py's own client: loads nothing by itself
    try:
        await plain.script_flush()
        client = connect(valkey_url)
        try:
            await client.ping()  # the first command makes the first connection
            shas = list(all_sources())
            assert len(shas) >= 19
            assert await plain.script_exists(*shas) == [True] * len(shas)
        finally:
            await client.aclose()
    finally:
        await plain.aclose()


async def test_a_pipeline_of_scripts_asks_nothing_first(redis: Redis) -> None:
    store = Store(redis)
    await store.setup()
    await store.enqueue("c1", {"type": "reply", "text": "hola"})
    exists, evalsha = await calls(redis, "script|exists"), await calls(redis, "evalsha")
    claims = await store.claim(["c1", "c2"], 60_000, 10)
    assert claims[0] is not None and claims[0].events[0]["text"] == "hola"
    assert claims[1] is not None and claims[1].events == []
    assert await calls(redis, "script|exists") == exists
    assert await calls(redis, "evalsha") == evalsha + 2


async def test_scripts_flushed_under_us_are_loaded_again(redis: Redis) -> None:
    store = Store(redis)
    await store.setup()
    await redis.script_flush()
    # a direct call, then a pipeline of two: each refused once, loaded, run once
    await store.enqueue("c1", {"type": "reply", "text": "uno"})
    await redis.script_flush()
    claims = await store.claim(["c1", "c2"], 60_000, 10)
    assert claims[0] is not None and [e["text"] for e in claims[0].events] == ["uno"]
    assert claims[1] is not None
    # the refused calls ran exactly once: c2 is locked by our claim, not claimed twice
    again = await store.claim(["c2"], 60_000, 10)
    assert again == [None]


async def test_a_transaction_with_a_script_checks_first(redis: Redis) -> None:
    store = Store(redis)
    await redis.script_flush()
    script = store._script("extend_lock")
    await redis.set("{c:x}:lock", "tok")
    async with redis.pipeline(transaction=True) as pipe:
        await script(keys=["{c:x}:lock"], args=["tok", 5000], client=pipe)
        assert await pipe.execute() == [1]
    assert sha_of(lua_source("extend_lock")) in all_sources()
    assert 0 < await redis.pttl("{c:x}:lock") <= 5000
