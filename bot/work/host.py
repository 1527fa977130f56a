"""What the core keeps for channels: the :class:`~channels.protocol.ChannelHost` they are given
(synced templates, shared rate buckets), and the engine's view of a channel.

A channel never sees the store; it asks this host, and only for these few things.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from bot.engine.sprint import Route
from bot.store import Store
from channels.protocol import Capabilities, Channel, RateLimit


class StoreHost:
    """The channel host on the store: one per process, shared by its channels."""

    def __init__(self, store: Store) -> None:
        self.store = store
        # One coroutine at a time per bucket asks Redis for the next turn: concurrent sends
        # (batch x send loops) would otherwise each hold a pooled connection while polling
        # and exhaust redis-py's pool (MaxConnectionsError -> the send failed for good).
        self._turns: dict[str, tuple[asyncio.Lock, int]] = {}  # bucket -> lock, its users

    async def templates(self, channel: str) -> list[dict[str, Any]]:
        return await self.store.templates(channel)

    async def save_templates(self, channel: str, templates: Sequence[dict[str, Any]]) -> None:
        await self.store.save_templates(channel, templates)

    async def throttle(self, bucket: str, rate: RateLimit) -> None:
        """Wait for ``bucket``'s turn: the rate is shared by every process through Redis."""
        if rate.per_second <= 0:
            return
        turn, users = self._turns.get(bucket) or (asyncio.Lock(), 0)
        self._turns[bucket] = (turn, users + 1)
        try:
            async with turn:
                while (wait := await self.store.rate_wait(bucket, rate.per_second, rate.burst)) > 0:
                    await asyncio.sleep(wait)
        finally:
            # one bucket per recipient (Telegram's per-chat limit) must not grow this dict for
            # ever: the lock goes with its last user
            turn, users = self._turns[bucket]
            if users == 1:
                del self._turns[bucket]
            else:
                self._turns[bucket] = (turn, users - 1)


def route_of(name: str, capabilities: Capabilities) -> Route:
    """What the engine must know of a channel called ``name`` that can do this."""
    return Route(
        name,
        capabilities.schemes,
        capabilities.window,
        capabilities.templates,
        buttons=capabilities.buttons,
        list_rows=capabilities.list_rows,
    )


def routes_of(channels: dict[str, Channel]) -> list[Route]:
    return [route_of(name, channel.capabilities) for name, channel in channels.items()]
