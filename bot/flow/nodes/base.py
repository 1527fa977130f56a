"""What every node kind is: a pydantic model of its YAML body plus how it behaves.

A node kind is one module in this package. Its class says which exits it has (named edges the
flow compiler turns into transitions), which texts it holds (checked as expressions at load) and
what happens when a run enters it. ``enter`` must be pure with respect to the outside world: it
reads and changes the run only through its :class:`~bot.flow.context.RunContext` (contact, run,
outbox) and never does I/O, because a retried commit re-runs it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from bot.flow.context import RunContext

NEXT = "next"
FAILURE = "failure"
OTHER = "other"
TIMEOUT = "timeout"


class NodeBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    KIND: ClassVar[str]
    # How the engine treats a run that entered the node and got no exit back from ``enter``.
    WAITS: ClassVar[bool] = False  # waits for a reply (``wait_for_reply``)
    CAN_FAIL: ClassVar[bool] = False  # honours ``on_failure``

    def exits(self, node: Node) -> dict[str, str | None]:
        """Exit name -> target node id (None ends the flow). Actions just have ``next``."""
        exits: dict[str, str | None] = {NEXT: node.next}
        if self.CAN_FAIL:
            exits[FAILURE] = node.on_failure if node.on_failure else node.next
        return exits

    def texts(self) -> Iterator[tuple[str, str]]:
        """(field path, text) of every field holding an expression, for the checker."""
        yield from ()

    def enter(self, node: Node, ctx: RunContext) -> str | None:
        """Do the node's work; return the exit to leave by, or None to stop here."""
        raise NotImplementedError

    # How a node that stopped the run goes on; only the kinds that stop implement theirs.
    def on_reply(self, node: Node, ctx: RunContext, text: str) -> str:
        """The contact answered (``wait_for_reply``): the exit to take."""
        raise NotImplementedError(f"{self.KIND} does not wait for replies")

    def on_timeout_fired(self, node: Node, ctx: RunContext) -> str:
        """The wait's timeout passed: the exit to take."""
        raise NotImplementedError(f"{self.KIND} has no timeout")

    def on_response(self, node: Node, ctx: RunContext, response: dict[str, Any]) -> str:
        """The HTTP answer it asked for arrived (``call_webhook``): the exit to take."""
        raise NotImplementedError(f"{self.KIND} makes no HTTP calls")


# A node as a flow holds it: its id and wiring around the kind's body. Here, beside the body,
# so that node kinds and the flow loader both import it without a cycle between them.
@dataclass(frozen=True)
class Node:
    id: str
    kind: str
    body: NodeBody
    next: str | None = None
    on_failure: str | None = None
    index: int = 0
    line: int | None = None  # of the node's kind key, for problems found after parsing

    def exits(self) -> dict[str, str | None]:
        return self.body.exits(self)
