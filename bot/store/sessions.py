"""Studio's sign-ins, kept server-side so that signing out ends a session for real (a cookie
alone could not be taken back), and idle ones expire by themselves."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.store.base import StoreBase, text
from bot.store.keys import session_key


class SessionStore(StoreBase):
    async def create_session(self, sid: str, fields: Mapping[str, str], idle: int) -> None:
        key = session_key(sid)
        async with self.redis.pipeline(transaction=True) as pipe:
            mapping: dict[Any, Any] = dict(fields)
            pipe.hset(key, mapping=mapping)
            pipe.expire(key, idle)
            await pipe.execute()

    async def session(self, sid: str, idle: int) -> dict[str, str] | None:
        """The session's fields, its idle time renewed; None when it ended or never was."""
        key = session_key(sid)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(key)
            pipe.expire(key, idle)
            found, _ = await pipe.execute()
        return {text(k): text(v) for k, v in found.items()} or None

    async def set_flash(self, sid: str, message: str) -> None:
        """A message for the next page this session sees (post/redirect/get)."""
        await self._r.hset(session_key(sid), "flash", message)

    async def clear_flash(self, sid: str) -> None:
        """The flash message was shown: once is enough."""
        await self._r.hdel(session_key(sid), "flash")

    async def drop_session(self, sid: str) -> None:
        await self._r.delete(session_key(sid))
