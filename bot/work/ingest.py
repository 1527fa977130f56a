"""What happens to a channel's inbound events: the core's half of every webhook.

A channel parses a webhook into typed events (``channels.protocol``); :class:`Ingest` does the
rest, the same for every channel type:

- :class:`Message` s, all of a webhook's in one script call: a redelivery of the same external
  id within the channel's ``redelivery`` seconds is dropped; otherwise the contact is found by
  URN (created if new, with the name the channel gave, and said so on the event: a
  ``new_contact`` trigger fires on it) and a ``reply`` event queued for it. A contact whose
  lock is free is claimed in the same call when this process's worker has room (the fast lane,
  bot/work/lane.py) and handed to it; the others are signalled on the ready stream;
- :class:`Status` es: applied to the messages we sent (monotonic: a late ``delivered`` never
  undoes ``read``), many in two round trips;
- a :class:`TemplateUpdate`: written onto the synced template, or a resync asked for when the
  template is not known here.

Redis errors propagate: the webhook is then not acknowledged and the provider delivers it again.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from bot.core.clock import no_later_than
from bot.engine.events import Reply
from bot.store import Inbound, Store
from bot.work.lane import Lane
from channels.protocol import (
    Attachment,
    Channel,
    ErrorInfo,
    InboundEvent,
    Location,
    Message,
    Status,
    TemplateUpdate,
)

log = logging.getLogger("chasqui.ingest")

StatusRow = tuple[str, str, float, ErrorInfo | None]
Stamped = TypeVar("Stamped", Message, Status)


@dataclass(slots=True)
class Outcome:
    """What became of one webhook's events (for logs and tests)."""

    queued: int = 0
    duplicates: int = 0
    statuses: int = 0
    unknown_statuses: int = 0  # for messages this server does not know (or no longer)
    templates: int = 0


class Ingest:
    def __init__(
        self,
        store: Store,
        channels: Mapping[str, Channel],
        clock: Callable[[], float] = time.time,
        lane: Lane | None = None,
        lock_ttl_ms: int = 60_000,
        max_events: int = 100,
    ) -> None:
        self.store = store
        self.channels = channels
        self.clock = clock  # the receive time: no event's own time may be later
        # the worker's fast lane (None: every message signals the ready stream); a contact
        # claimed here is locked for ``lock_ttl_ms`` with up to ``max_events`` events read
        self.lane = lane
        self.lock_ttl_ms = lock_ttl_ms
        self.max_events = max_events

    async def accept(self, events: Sequence[InboundEvent]) -> Outcome:
        """Apply one webhook's events: messages first, then statuses, then template updates."""
        outcome = Outcome()
        statuses: dict[str, list[StatusRow]] = {}
        updates: list[TemplateUpdate] = []
        messages: list[Message] = []
        now = self.clock()
        for event in events:
            if isinstance(event, Message):
                messages.append(_no_later(event, now))
            elif isinstance(event, Status):
                event = _no_later(event, now)
                statuses.setdefault(event.channel, []).append(
                    (event.external_id, event.status, event.timestamp, event.error)
                )
            else:
                updates.append(event)
        if messages:
            queued = await self.messages(messages)
            outcome.queued += queued
            outcome.duplicates += len(messages) - queued
        for channel, rows in statuses.items():
            results = await self.store.apply_statuses(channel, rows)
            unknown = results.count("unknown")
            outcome.statuses += len(rows)
            outcome.unknown_statuses += unknown
            if unknown:
                log.debug("%d status(es) for messages %s does not know", unknown, channel)
        for update in updates:
            await self.template_update(update)
            outcome.templates += 1
        return outcome

    async def messages(self, messages: Sequence[Message]) -> int:
        """Queue each message for its contact (created if new), in one call; how many were
        queued (the others were redeliveries)."""
        items = []
        for message in messages:
            channel = self.channels.get(message.channel)
            items.append(
                Inbound(
                    f"in:{message.channel}:{message.external_id}",
                    channel.capabilities.redelivery if channel is not None else 86400,
                    message.urn,
                    message.contact_name,
                    message.timestamp,
                    reply_event(message),
                )
            )
        lane = self.lane
        room = lane.reserve(len(items)) if lane is not None else 0
        try:
            outcomes, claims = await self.store.inbound(
                items, room, self.lock_ttl_ms, self.max_events
            )
        except BaseException:
            if lane is not None:
                lane.hand([], room)  # nothing was claimed: the room is free again
            raise
        if lane is not None:
            lane.hand(claims, room)  # durable now: the webhook may be answered
        for message, outcome in zip(messages, outcomes, strict=True):
            if outcome is None:
                log.debug("duplicate delivery of %s ignored", message.external_id)
                continue
            channel = self.channels.get(message.channel)
            if channel is not None:
                await channel.accepted(message)
        return sum(outcome is not None for outcome in outcomes)

    async def template_update(self, update: TemplateUpdate) -> None:
        stored = await self.store.templates(update.channel)
        item = next(
            (t for t in stored if (t["name"], t["language"]) == (update.name, update.language)),
            None,
        )
        channel = self.channels.get(update.channel)
        if item is None:
            log.info(
                "status %s for unknown template %s/%s: syncing",
                update.status,
                update.name,
                update.language,
            )
            if channel is not None:
                await channel.templates_changed(resync=True)
            return
        item["status"] = update.status
        if update.reason:
            item["rejected_reason"] = update.reason
        if update.rejection:
            item["rejection_info"] = dict(update.rejection)
        await self.store.update_template(update.channel, item)
        if channel is not None:
            await channel.templates_changed(resync=False)


def _no_later(event: Stamped, now: float) -> Stamped:
    """``event`` with its time no later than ``now``, the time it was received."""
    if event.timestamp == no_later_than(event.timestamp, now):
        return event
    return dataclasses.replace(event, timestamp=now)


def reply_event(message: Message) -> dict[str, Any]:
    """The ``reply`` event the engine applies for an inbound message, as queued (``inbound.lua``
    adds ``new_contact`` when the contact was created for this message: its first ever)."""
    return Reply(
        at=message.timestamp,
        text=message.text,
        channel=message.channel,
        urn=message.urn,
        record_only=not message.is_reply,
        external_id=message.external_id,
        msg_type=message.kind,
        payload=message.payload or None,
        media=_present(message.attachment) if message.attachment else None,
        location=_present(message.location) if message.location else None,
        reply_to=message.reply_to or None,
        sent_at=message.timestamp,
        contacts=[dict(card) for card in message.contacts] if message.contacts else None,
        reaction=dict(message.reaction) if message.reaction else None,
    ).encode()


def _present(record: Attachment | Location) -> dict[str, Any]:
    """The record's fields that carry something (the event stays small)."""
    return {name: value for name in record.__slots__ if (value := getattr(record, name))}
