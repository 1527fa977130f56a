"""What happens to a channel's inbound events: the core's half of every webhook.

A channel parses a webhook into typed events (``channels.protocol``); :class:`Ingest` does the
rest, the same for every channel type:

- a :class:`Message`: find the contact by URN (create it if new, with the name the channel
  gave, and say so on the event: a ``new_contact`` trigger fires on it), then queue a ``reply``
  event for it once — a redelivery of the same external id within
  the channel's ``redelivery`` seconds is dropped, atomically with the queueing;
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
from bot.store import Store
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
    ) -> None:
        self.store = store
        self.channels = channels
        self.clock = clock  # the receive time: no event's own time may be later

    async def accept(self, events: Sequence[InboundEvent]) -> Outcome:
        """Apply one webhook's events: messages first, then statuses, then template updates."""
        outcome = Outcome()
        statuses: dict[str, list[StatusRow]] = {}
        updates: list[TemplateUpdate] = []
        now = self.clock()
        for event in events:
            if isinstance(event, Message):
                if await self.message(_no_later(event, now)):
                    outcome.queued += 1
                else:
                    outcome.duplicates += 1
            elif isinstance(event, Status):
                event = _no_later(event, now)
                statuses.setdefault(event.channel, []).append(
                    (event.external_id, event.status, event.timestamp, event.error)
                )
            else:
                updates.append(event)
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

    async def message(self, message: Message) -> bool:
        """Queue ``message`` for its contact (created if new); False if it was a redelivery."""
        cid, created = await self.store.ensure_contact(
            message.urn, message.contact_name, message.timestamp
        )
        channel = self.channels.get(message.channel)
        redelivery = channel.capabilities.redelivery if channel is not None else 86400
        queued = await self.store.enqueue_once(
            f"in:{message.channel}:{message.external_id}",
            redelivery,
            cid,
            reply_event(message, new_contact=created),
        )
        if not queued:
            log.debug("duplicate delivery of %s ignored", message.external_id)
        elif channel is not None:
            await channel.accepted(message)
        return queued

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


def reply_event(message: Message, new_contact: bool = False) -> dict[str, Any]:
    """The ``reply`` event the engine applies for an inbound message, as queued;
    ``new_contact``: the contact was created for this message (its first message ever)."""
    return Reply(
        at=message.timestamp,
        text=message.text,
        channel=message.channel,
        urn=message.urn,
        record_only=not message.is_reply,
        new_contact=new_contact,
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
