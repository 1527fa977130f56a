"""The console channel: contacts reached in a terminal (``console:`` URNs), by the simulator.

A send has nowhere to go: it is accepted at once, and the message is in the contact's history
like any other, which is where ``chasqui simulate`` reads what the bot said (whichever process,
the simulator itself or a running ``chasqui serve``, applied the contact's events).
"""

from __future__ import annotations

from typing import Any

from channels.protocol import Capabilities, Channel, SendResult


class ConsoleChannel(Channel):
    TYPE = "console"
    CAPABILITIES = Capabilities(schemes=("console",))

    async def send(self, message: dict[str, Any]) -> SendResult:
        return SendResult(ok=True, external_id=message["uuid"])


CHANNEL = ConsoleChannel
