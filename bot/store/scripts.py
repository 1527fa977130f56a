"""Our Lua scripts, called as bare ``EVALSHA`` -- also inside pipelines.

redis-py's own script objects make a pipeline that holds a script ask ``SCRIPT EXISTS`` first:
one more round trip per pipeline, four per answered message on the hot path (issue 12's budget,
docs/performance.md). Here instead:

- every connection loads all our scripts when it connects (``ScriptLoading``), so a restarted or
  failed-over Redis, whose script cache is empty, has them before the first command;
- a ``NOSCRIPT`` reply anyway (someone ran ``SCRIPT FLUSH``, or the client was made without our
  connection class) loads them all and runs the refused calls again: a refused call ran nothing.

A transaction (``MULTI``) keeps redis-py's check first: re-running part of it would not be atomic.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

log = logging.getLogger("chasqui.redis")


# A line ``--!include <name>`` in a script is replaced by ``lua/<name>.lua``: logic two scripts
# share (lua/status.lua) is written once and sent inside each.
INCLUDE = re.compile(r"^--!include (\w+)$", re.MULTILINE)


@cache
def lua_source(name: str) -> str:
    """The text of ``bot/store/lua/<name>.lua`` with its includes (read once per process)."""
    raw = resources.files("bot.store").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")
    return INCLUDE.sub(lambda m: lua_source(m.group(1)), raw)


@cache
def all_sources() -> dict[str, str]:
    """sha1 -> source of every script in ``bot/store/lua``."""
    names = sorted(
        entry.name.removesuffix(".lua")
        for entry in resources.files("bot.store").joinpath("lua").iterdir()
        if entry.name.endswith(".lua")
    )
    return {sha_of(lua_source(name)): lua_source(name) for name in names}


def sha_of(source: str) -> str:
    return hashlib.sha1(source.encode()).hexdigest()


class ScriptPipeline(Pipeline):
    """A pipeline whose scripts go out as ``EVALSHA`` without asking first (see the module)."""

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        stack = list(self.command_stack)
        if self.is_transaction or not any(args[0] == "EVALSHA" for args, _ in stack):
            return await super().execute(raise_on_error)
        results = await super().execute(raise_on_error=False)
        refused = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
        if refused:
            log.warning("Redis had lost our scripts (SCRIPT FLUSH?): loading them again")
            immediate: Any = self.immediate_execute_command  # untyped in redis-py
            for source in all_sources().values():
                await immediate("SCRIPT LOAD", source)
            self.command_stack = [stack[i] for i in refused]
            again = await super().execute(raise_on_error=False)
            for i, result in zip(refused, again, strict=True):
                results[i] = result
        if raise_on_error:
            self.raise_first_error(stack, results)
        return results


class ChasquiRedis(Redis):
    """The client :func:`bot.store.redisconn.connect` makes: its pipelines are ScriptPipelines."""

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> ScriptPipeline:
        pool, callbacks = self.connection_pool, self.response_callbacks
        return ScriptPipeline(pool, callbacks, transaction, shard_hint)


class Script:
    """One script bound to a client; called as ``await script(keys=..., args=..., client=pipe)``."""

    def __init__(self, redis: Redis, name: str) -> None:
        self.redis = redis
        self.source = lua_source(name)
        self.sha = sha_of(self.source)
        self._checked = AsyncScript(redis, self.source)  # for transactions and foreign pipelines

    async def __call__(
        self, keys: Sequence[Any] = (), args: Sequence[Any] = (), client: Any = None
    ) -> Any:
        if client is None:
            try:
                return await self.redis.evalsha(self.sha, len(keys), *keys, *args)
            except NoScriptError:
                await self.redis.script_load(self.source)
                return await self.redis.evalsha(self.sha, len(keys), *keys, *args)
        if isinstance(client, ScriptPipeline) and not client.is_transaction:
            return client.evalsha(self.sha, len(keys), *keys, *args)  # queued, not awaited
        return await self._checked(keys=keys, args=args, client=client)


class ScriptLoading:
    """Connection mixin: load every script of ours as soon as the connection is made (one
    pipelined write; loading a script the server has is a lookup)."""

    async def on_connect_check_health(self, check_health: bool = True) -> None:
        await super().on_connect_check_health(check_health)  # type: ignore[misc]
        sources = list(all_sources().values())
        conn: Any = self
        await conn.send_packed_command(
            [part for source in sources for part in conn.pack_command("SCRIPT", "LOAD", source)],
            check_health=False,
        )
        for _ in sources:
            await conn.read_response()
