"""What a node kind may see and do while a run passes through it: the :class:`RunContext`.

Node kinds (``bot/flow/nodes/``) and the compiled machine (``bot/flow/machine.py``) act on one
contact's state only through this protocol. The engine's ``Sprint`` implements it; the flow layer
never imports the engine, so a node kind can be read, tested and checked without it. It is a
``typing.Protocol``: nothing is checked at run time and a call costs what a call on the sprint
costs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class FlowView(Protocol):
    """What a node reads of the flow it runs in (a protocol, not ``bot.flow.files.Flow``, so that
    node kinds and the flow loader that builds them do not import each other)."""

    @property
    def id(self) -> str: ...

    @property
    def language(self) -> str: ...


class RunContext(Protocol):
    """One contact's run as a node sees it: read the contact and the input, record effects."""

    # -- what a node reads -----------------------------------------------------------------
    @property
    def contact(self) -> dict[str, Any]:
        """The contact record; a node that changes it calls :meth:`contact_changed`."""

    @property
    def flow(self) -> FlowView:
        """The flow the innermost run is in."""

    @property
    def input_alternates(self) -> list[str]:
        """Other readings of the reply being answered (a tapped button's payload)."""

    @property
    def input_external_id(self) -> str | None:
        """The provider's id of the message being answered, if any."""

    def render(self, text: str) -> str:
        """``text`` with its ``@`` expressions evaluated for this contact and run."""

    # -- what a node does ------------------------------------------------------------------
    def contact_changed(self) -> None:
        """The node changed :attr:`contact`: save it, and let expressions see the change."""

    def save_result(
        self, name: str, value: str, category: str, node_id: str, input_text: str | None = None
    ) -> None:
        """Store ``@results.<name>`` on the run."""

    def change_groups(self, add: Sequence[str] = (), remove: Sequence[str] = ()) -> None:
        """Add the contact to groups and remove it from others."""

    def send(self, node_id: str, content: dict[str, Any]) -> str | None:
        """Queue a message to the contact; an error code when it cannot go at all."""

    def wait(self, timeout: int | None) -> None:
        """Stop the run here until a reply, the timeout (seconds) or the run's expiry."""

    def request_webhook(self, request: dict[str, Any]) -> None:
        """Ask for an HTTP call; its answer comes back to the node's ``on_response``."""

    def enter_subflow(self, flow_id: str) -> None:
        """Start a run of another flow, to come back here when it ends."""

    # -- what the machine records as the run moves -----------------------------------------
    def entered(self, node_id: str) -> None:
        """The run entered ``node_id`` (its path, the step limit)."""

    def took(self, flow: str, node: str, exit_name: str) -> None:
        """The run left ``node`` by ``exit_name`` (the flow's counters)."""
