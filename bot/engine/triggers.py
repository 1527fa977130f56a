"""Which flow a contact's message starts, if any: the triggers of every flow, indexed once.

:class:`TriggerIndex` is built when the flows are loaded (bot/engine/flows.py), so a message
costs a few dict lookups -- by channel, then by keyword -- never a walk over the flows.
:func:`decide` is the precedence of docs/triggers.md, pure; the engine applies what it says
(bot/engine/apply.py). Opt-out words come before all of this and are the engine's own.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot.flow.files import Flow
from bot.flow.triggers import MatchMode, Trigger, TriggerType, normal, words

# the order in which keyword modes are tried: the narrowest reading of the message first
MODES: tuple[MatchMode, ...] = ("whole_message", "first_word", "any_word")


@dataclass(frozen=True, slots=True)
class Hit:
    """A trigger that fires: the flow it starts, and what ``@trigger`` says about it."""

    flow: str
    type: TriggerType
    interrupt: bool = False
    keyword: str | None = None  # the keyword (normalised) that matched

    def describe(self, text: str, channel: str | None) -> dict[str, Any]:
        """The run's ``trigger`` record: what started it."""
        out: dict[str, Any] = {"type": self.type, "text": text}
        if self.keyword is not None:
            out["keyword"] = self.keyword
        if channel:
            out["channel"] = channel
        return out


_Keywords = dict[MatchMode, dict[str, Hit]]
_DAYS = uuid.UUID("5d0c6c4e-2a7e-4c43-9b8e-6f1f4f2b7a11")  # namespace of the day records' ids


def day_start(flow: str, now: float) -> str:
    """The uuid of the start record that holds a flow's triggered runs of one UTC day (the
    starts history shows them as one start a day: docs/triggers.md). Derived, not stored: every
    process names the same record for the same flow and day."""
    day = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")
    return str(uuid.uuid5(_DAYS, f"{flow}/{day}"))


class TriggerIndex:
    """Every trigger of the loaded flows, by channel (``None``: declared for every channel).

    Flows whose claims clash were refused before this is built (``trigger_conflicts``), so a
    keyword has one owner per channel; should two still meet, the first flow keeps it.
    """

    def __init__(self, flows: Iterable[Flow]) -> None:
        self.keywords: dict[str | None, _Keywords] = {}
        self.catch_all: dict[str | None, Hit] = {}
        self.new_contact: dict[str | None, Hit] = {}
        for flow in flows:
            for trigger in flow.triggers:
                self._add(flow.id, trigger)

    def _add(self, flow: str, trigger: Trigger) -> None:
        channels = sorted(trigger.channels) if trigger.channels is not None else [None]
        for channel in channels:
            if trigger.type == "catch_all":
                self.catch_all.setdefault(channel, Hit(flow, "catch_all"))
            elif trigger.type == "new_contact":
                self.new_contact.setdefault(channel, Hit(flow, "new_contact"))
            else:
                modes = self.keywords.setdefault(channel, {})
                table = modes.setdefault(trigger.match, {})
                for keyword in trigger.keywords:
                    table.setdefault(keyword, Hit(flow, "keyword", trigger.interrupt, keyword))

    def __bool__(self) -> bool:
        return bool(self.keywords or self.catch_all or self.new_contact)

    def keyword(self, text: str, channel: str | None) -> Hit | None:
        """The keyword trigger ``text`` matches on ``channel``: a whole-message keyword first,
        then the first word's, then any word's (the earliest word of the message)."""
        tables = [t for t in (self.keywords.get(channel), self.keywords.get(None)) if t]
        if not tables or not text:
            return None
        found = words(text)
        if not found:
            return None
        for mode in MODES:
            for table in tables:
                exact = table.get(mode)
                if not exact:
                    continue
                if mode == "whole_message":
                    hit = exact.get(" ".join(found))
                elif mode == "first_word":
                    hit = exact.get(found[0])
                else:
                    hit = next((exact[w] for w in found if w in exact), None)
                if hit is not None:
                    return hit
        return None

    def fallback(self, table: dict[str | None, Hit], channel: str | None) -> Hit | None:
        return table.get(channel) or table.get(None)


def decide(
    index: TriggerIndex,
    text: str,
    channel: str | None,
    *,
    new_contact: bool,
    waiting: bool,
    in_flow: bool,
    wait_takes: Callable[[], bool],
) -> Hit | None:
    """The trigger a message fires, after opt-out words (the engine's, first of all):

    1. a contact waiting in a run: the run takes the reply -- unless the message is a keyword
       whose trigger says ``interrupt: true`` and the waiting question has no case for it
       (``wait_takes``: a case written for the answer wins, as it does over a stop word);
    2. the contact's first message ever: the ``new_contact`` trigger;
    3. a keyword: its flow (a run the contact is in but not waiting at ends interrupted);
    4. a contact in no flow: the ``catch_all`` trigger.

    None: nothing starts (the waiting run, if any, takes the reply).
    """
    if not index:
        return None
    hit = index.keyword(text, channel)
    if waiting:
        if hit is not None and hit.interrupt and not wait_takes():
            return hit
        return None
    if new_contact:
        fresh = index.fallback(index.new_contact, channel)
        if fresh is not None:
            return fresh
    if hit is not None:
        return hit
    if not in_flow:
        return index.fallback(index.catch_all, channel)
    return None


__all__ = ["MODES", "Hit", "TriggerIndex", "day_start", "decide", "normal"]
