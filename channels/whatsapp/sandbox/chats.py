"""The conversations the sandbox phone shows: per (number, user), the bubbles in both directions
with their ticks, in memory like the rest of the sandbox.

Fed by the send pipeline (an accepted send), the inbound builder (a user message), the webhook
dispatcher (a status as it is posted) and Chasqui's mark-as-read. Bounded: a benchmark that sends
to 100,000 users keeps only the most recent chats and the last bubbles of each.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

from channels.whatsapp.sandbox.bubbles import View

MAX_CHATS = 2000
MAX_BUBBLES = 100
# Out: sent < delivered < read; a status never moves a tick back (Meta may post them out of
# order), except ``failed``, which wins.
RANK = {"": 0, "sent": 1, "delivered": 2, "read": 3, "failed": 4}


@dataclass(slots=True)
class Bubble:
    wamid: str
    out: bool  # sent by the business (the bot); False: written by the user
    at: float
    view: View
    # out: "", sent, delivered, read, failed. in: "" (posting), "delivered" (Chasqui answered
    # 200), "read" (Chasqui marked it read), "failed" (Chasqui did not take it).
    tick: str = ""
    error: str = ""
    # for a read status the phone posts itself (out bubbles only)
    recipient_id: str | None = None
    user_id: str | None = None
    biz_opaque: str | None = None


@dataclass(slots=True)
class Chat:
    number: str  # the business's phone_number_id
    user: str  # the user's wa_id (or BSUID)
    name: str = ""  # the user's profile name, as last written
    bubbles: deque[Bubble] = field(default_factory=lambda: deque(maxlen=MAX_BUBBLES))
    auto_read: bool = True  # False: the bot's messages stay delivered until "mark as read"
    version: int = 0  # grows with every change: the page's poll asks "anything new?"

    @property
    def last(self) -> Bubble | None:
        return self.bubbles[-1] if self.bubbles else None

    def unread(self) -> list[Bubble]:
        return [b for b in self.bubbles if b.out and b.tick in ("sent", "delivered")]


class Chats:
    def __init__(self) -> None:
        self.chats: OrderedDict[tuple[str, str], Chat] = OrderedDict()  # least recent first
        self.by_wamid: dict[str, tuple[Chat, Bubble]] = {}
        self.version = 0  # grows with every change to any chat

    def touch(self, chat: Chat) -> None:
        chat.version += 1
        self.version += 1

    def clear(self) -> None:
        self.chats.clear()
        self.by_wamid.clear()

    def get(self, number: str, user: str) -> Chat | None:
        return self.chats.get((number, user))

    def chat(self, number: str, user: str) -> Chat:
        """The chat, created when new; it becomes the most recent."""
        key = (number, user)
        found = self.chats.get(key)
        if found is None:
            found = self.chats[key] = Chat(number, user)
            self.version += 1
            while len(self.chats) > MAX_CHATS:
                _, dropped = self.chats.popitem(last=False)
                for bubble in dropped.bubbles:
                    self.by_wamid.pop(bubble.wamid, None)
        else:
            self.chats.move_to_end(key)
        return found

    def recent(self, number: str, limit: int) -> list[Chat]:
        """The ``limit`` most recent chats of ``number``, newest first."""
        found: list[Chat] = []
        for chat in reversed(self.chats.values()):
            if chat.number == number:
                found.append(chat)
                if len(found) >= limit:
                    break
        return found

    def count(self, number: str) -> int:
        return sum(1 for c in self.chats.values() if c.number == number)

    def auto_read(self, number: str, user: str) -> bool:
        found = self.chats.get((number, user))
        return found is None or found.auto_read

    def add(self, chat: Chat, bubble: Bubble) -> None:
        if len(chat.bubbles) == chat.bubbles.maxlen:
            self.by_wamid.pop(chat.bubbles[0].wamid, None)
        chat.bubbles.append(bubble)
        self.by_wamid[bubble.wamid] = (chat, bubble)
        self.touch(chat)

    def received(self, wamid: str, ok: bool) -> None:
        """The user's message reached Chasqui (``ok``: it answered 200), or did not."""
        found = self.by_wamid.get(wamid)
        if found is None:
            return
        chat, bubble = found
        if ok and bubble.tick in ("", "failed"):
            bubble.tick, bubble.error = "delivered", ""
        elif not ok and bubble.tick == "":
            bubble.tick, bubble.error = "failed", "Chasqui did not answer 200; the sandbox retries"
        self.touch(chat)

    def tick(self, wamid: str, status: str, error: str = "") -> None:
        """A status for a bubble (the bot's: sent/delivered/read/failed; the user's: ours)."""
        found = self.by_wamid.get(wamid)
        if found is None:
            return
        chat, bubble = found
        if RANK.get(status, 0) > RANK.get(bubble.tick, 0):
            bubble.tick = status
            bubble.error = error or bubble.error
            self.touch(chat)
