"""What every part of the store shares: the connection, the scripts, JSON encoding."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis

from bot.store.scripts import Script


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def text(value: Any) -> str:
    """A reply (bytes) or an argument as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


class StoreBase:
    """The connection and the scripts (bare EVALSHA: bot/store/scripts.py)."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        # redis-py types replies as bytes/str unions; this client always answers bytes.
        self._r: Any = redis
        self._scripts: dict[str, Script] = {}

    async def ping(self) -> None:
        await self._r.ping()

    async def flush(self) -> None:
        """Empty the database (a throwaway one: conversation tests)."""
        await self._r.flushdb()

    def _script(self, name: str) -> Script:
        script = self._scripts.get(name)
        if script is None:
            script = self._scripts[name] = Script(self.redis, name)
        return script

    async def _read_own(
        self, stream: str, group: str, consumer: str, count: int
    ) -> list[tuple[bytes, str]]:
        """Entries this consumer read and has not acknowledged: a step that failed midway (Redis
        went away) does them again at once, instead of leaving them to the reclaim's idle time.
        Entries trimmed from the stream meanwhile are acknowledged and left out."""
        reply = await self._r.xreadgroup(group, consumer, {stream: "0"}, count)
        entries = [(eid, fields) for _, found in reply for eid, fields in found]
        gone = [eid for eid, fields in entries if not fields]
        if gone:
            await self._r.xack(stream, group, *gone)
        return [(eid, fields[b"c"].decode()) for eid, fields in entries if fields]

    async def _read(
        self, stream: str, group: str, consumer: str, count: int, block_ms: int | None
    ) -> list[tuple[bytes, str]]:
        """(entry id, contact uuid) of new signals on ``stream`` for this consumer."""
        reply = await self._r.xreadgroup(group, consumer, {stream: ">"}, count, block_ms)
        return [(eid, fields[b"c"].decode()) for _, entries in reply for eid, fields in entries]

    async def _reclaim(
        self, stream: str, group: str, consumer: str, min_idle_ms: int, count: int
    ) -> list[tuple[bytes, str]]:
        reply = await self._r.xautoclaim(stream, group, consumer, min_idle_ms, "0", count)
        return [(eid, fields[b"c"].decode()) for eid, fields in reply[1] if fields]

    async def _ack(self, stream: str, group: str, ids: Sequence[bytes]) -> None:
        if ids:
            async with self._r.pipeline(transaction=False) as pipe:
                pipe.xack(stream, group, *ids)
                pipe.xdel(stream, *ids)
                await pipe.execute()
