"""``add_to_group`` / ``remove_from_group``: change the contact's group membership."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from bot.flow.nodes.base import NEXT, NodeBody

if TYPE_CHECKING:
    from bot.flow.context import RunContext
    from bot.flow.nodes.base import Node


class _GroupChange(NodeBody):
    groups: list[str] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, raw: Any) -> Any:
        """``add_to_group: VIP`` and ``add_to_group: [VIP, Beta]`` read as well as the long form."""
        if isinstance(raw, str):
            return {"groups": [raw]}
        if isinstance(raw, list):
            return {"groups": raw}
        return raw


class AddToGroup(_GroupChange):
    KIND = "add_to_group"

    def enter(self, node: Node, ctx: RunContext) -> str | None:
        ctx.change_groups(add=self.groups)
        return NEXT


class RemoveFromGroup(_GroupChange):
    KIND = "remove_from_group"

    def enter(self, node: Node, ctx: RunContext) -> str | None:
        ctx.change_groups(remove=self.groups)
        return NEXT
