"""``enter_flow``: run another flow and come back here when it ends.

``next`` is taken when the child completes, ``on_failure`` when the child cannot start (its flow
is gone). A child that expires, fails or is interrupted ends its parents with it, as in RapidPro.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from bot.flow.nodes.base import NodeBody

if TYPE_CHECKING:
    from bot.flow.context import RunContext
    from bot.flow.nodes.base import Node


class EnterFlow(NodeBody):
    KIND = "enter_flow"
    CAN_FAIL = True

    flow: str = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, raw: Any) -> Any:
        return {"flow": raw} if isinstance(raw, str) else raw

    def enter(self, node: Node, ctx: RunContext) -> str | None:
        ctx.enter_subflow(self.flow)
        return None
