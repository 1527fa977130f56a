"""``split``: route on an expression (``@fields.tier``, ``@results.delivery.category``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from pydantic import Field

from bot.flow.nodes.base import NodeBody
from bot.flow.nodes.routing import Case, Exit, route, route_exits

if TYPE_CHECKING:
    from bot.flow.context import RunContext
    from bot.flow.nodes.base import Node


class Split(NodeBody):
    KIND = "split"

    on: str
    result: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    cases: list[Case] = Field(default_factory=list)
    other: Exit = Exit(category="Other")

    def texts(self) -> Iterator[tuple[str, str]]:
        yield "on", self.on

    def exits(self, node: Node) -> dict[str, str | None]:
        exits = route_exits(self.cases, self.other)
        if exits["other"] is None:
            exits["other"] = node.next
        return exits

    def enter(self, node: Node, ctx: RunContext) -> str | None:
        return route(self.cases, self.other, ctx.render(self.on), ctx, self.result, node.id)
