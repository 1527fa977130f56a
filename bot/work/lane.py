"""The fast lane: contacts a webhook claimed for this process's worker.

When a webhook queues a reply event and the contact's lock is free, ``inbound.lua`` claims the
contact in the same call (:meth:`bot.store.Store.inbound`) and the claim comes here, to be
decided and committed by this process's :class:`~bot.work.worker.Worker` -- no ready-stream
signal, no second claim. The lane bounds how many claims the process holds at once
(``limit``): past it, webhooks signal the ready stream as before, and any process takes the
contact. A claim is reserved before the script runs (:meth:`reserve`) and handed over after
(:meth:`hand`), so concurrent webhooks never take more than the bound together.

While the worker is stopped the lane is closed: ``reserve`` answers 0 and every message goes
through the ready stream. Why a claim held here is never lost: docs/performance.md.
"""

from __future__ import annotations

import asyncio

from bot.store import Claim


class Lane:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = False
        self._waiting: list[Claim] = []
        self._in_hand = 0  # reserved, waiting, or being decided and committed
        self._wake = asyncio.Event()

    @property
    def in_hand(self) -> int:
        return self._in_hand

    def reserve(self, wanted: int) -> int:
        """Room for up to ``wanted`` claims, taken now (0 when closed or full); give back what
        was not used with :meth:`hand`."""
        room = max(0, min(wanted, self.limit - self._in_hand)) if self.open else 0
        self._in_hand += room
        return room

    def hand(self, claims: list[Claim], reserved: int) -> None:
        """The claims a webhook took with ``reserved`` room (the unused room is freed)."""
        self._in_hand -= reserved - len(claims)
        if claims:
            self._waiting.extend(claims)
        self._wake.set()

    def done(self, n: int) -> None:
        """``n`` claims taken with :meth:`take` are committed or released."""
        self._in_hand -= n
        self._wake.set()

    async def take(self, batch: int) -> list[Claim] | None:
        """Up to ``batch`` waiting claims, once there are some; None once the lane is closed
        and nothing is in hand any more."""
        while not self._waiting:
            if not self.open and self._in_hand == 0:
                return None
            self._wake.clear()
            await self._wake.wait()
        claims, self._waiting = self._waiting[:batch], self._waiting[batch:]
        return claims

    def close(self) -> None:
        """Reserve nothing more; :meth:`take` ends once what is in hand is done."""
        self.open = False
        self._wake.set()

    def leftover(self) -> list[Claim]:
        """The claims still waiting (after the worker stopped taking them)."""
        claims, self._waiting = self._waiting, []
        self._in_hand -= len(claims)
        return claims
