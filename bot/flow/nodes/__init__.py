"""The registry of node kinds: the YAML key that names a node's kind -> its model."""

from __future__ import annotations

from bot.flow.nodes.base import NodeBody
from bot.flow.nodes.call_webhook import CallWebhook
from bot.flow.nodes.enter_flow import EnterFlow
from bot.flow.nodes.groups import AddToGroup, RemoveFromGroup
from bot.flow.nodes.send_message import SendMessage
from bot.flow.nodes.set_result import SetResult
from bot.flow.nodes.split import Split
from bot.flow.nodes.update_contact import UpdateContact
from bot.flow.nodes.wait_for_reply import WaitForReply

NODE_KINDS: dict[str, type[NodeBody]] = {
    kind.KIND: kind
    for kind in (
        SendMessage,
        UpdateContact,
        WaitForReply,
        Split,
        CallWebhook,
        SetResult,
        AddToGroup,
        RemoveFromGroup,
        EnterFlow,
    )
}

__all__ = ["NODE_KINDS", "NodeBody"]
