"""The registry of node kinds: the YAML key that names a node's kind -> its model."""

from __future__ import annotations

from bot.nodes.base import NodeBody
from bot.nodes.call_webhook import CallWebhook
from bot.nodes.enter_flow import EnterFlow
from bot.nodes.groups import AddToGroup, RemoveFromGroup
from bot.nodes.send_message import SendMessage
from bot.nodes.set_result import SetResult
from bot.nodes.split import Split
from bot.nodes.update_contact import UpdateContact
from bot.nodes.wait_for_reply import WaitForReply

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
