"""``wait_for_reply``: the run stops here until a reply, the timeout, or expiry."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from bot.core.durations import Duration, parse_duration
from bot.flow.nodes.base import OTHER, TIMEOUT, NodeBody
from bot.flow.nodes.routing import Case, Exit, route, route_exits

if TYPE_CHECKING:
    from bot.flow.context import RunContext
    from bot.flow.nodes.base import Node


class WaitForReply(NodeBody):
    KIND = "wait_for_reply"
    WAITS = True

    result: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    timeout: Duration | None = None
    cases: list[Case] = Field(default_factory=list)
    other: Exit = Exit(category="Other")
    on_timeout: Exit | None = None

    @property
    def timeout_seconds(self) -> int | None:
        return parse_duration(self.timeout) if self.timeout else None

    def exits(self, node: Node) -> dict[str, str | None]:
        exits = route_exits(self.cases, self.other)
        if exits[OTHER] is None:
            exits[OTHER] = node.next
        if self.on_timeout is not None:
            exits[TIMEOUT] = self.on_timeout.next
        return exits

    def enter(self, node: Node, ctx: RunContext) -> str | None:
        ctx.wait(self.timeout_seconds if self.on_timeout else None)
        return None

    def on_reply(self, node: Node, ctx: RunContext, text: str) -> str:
        return route(self.cases, self.other, text, ctx, self.result, node.id)

    def on_timeout_fired(self, node: Node, ctx: RunContext) -> str:
        assert self.on_timeout is not None
        if self.result:
            ctx.save_result(self.result, "", self.on_timeout.category, node.id)
        return TIMEOUT
