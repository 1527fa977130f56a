"""The console channel: messages go to a per-contact Redis stream the terminal simulator reads.

It is a real transport (through Redis), so ``chasqui simulate`` works whichever process — the
simulator itself or a running ``chasqui serve`` — applied the contact's events.
"""

from __future__ import annotations

from typing import Any

from channels.protocol import Capabilities, Channel, SendResult


class ConsoleChannel(Channel):
    TYPE = "console"
    CAPABILITIES = Capabilities(schemes=("console",))

    async def send(self, message: dict[str, Any]) -> SendResult:
        await self.host.console_append(message["contact"], message)
        return SendResult(ok=True, external_id=message["uuid"])


CHANNEL = ConsoleChannel
