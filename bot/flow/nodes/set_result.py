"""``set_result``: store a named result (``@results.<name>``) without asking anything."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from pydantic import Field

from bot.flow.nodes.base import NEXT, NodeBody

if TYPE_CHECKING:
    from bot.flow.context import RunContext
    from bot.flow.nodes.base import Node


class SetResult(NodeBody):
    KIND = "set_result"

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    value: str
    category: str | None = None

    def texts(self) -> Iterator[tuple[str, str]]:
        yield "value", self.value
        if self.category:
            yield "category", self.category

    def enter(self, node: Node, ctx: RunContext) -> str | None:
        value = ctx.render(self.value)
        category = ctx.render(self.category) if self.category else value
        ctx.save_result(self.name, value, category, node.id)
        return NEXT
