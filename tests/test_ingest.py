"""The core's half of a webhook (``bot.work.ingest``): contacts, dedup, queueing, statuses,
template updates — on the real store, driven through the real worker where a flow must answer."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.store.keys import contact_key
from bot.work.ingest import Ingest
from channels.protocol import Attachment, Location, Message, Status, TemplateUpdate
from tests.support.harness import Bot, CapturingChannel, MakeBot

ECHO = """\
name: Echo
nodes:
  - id: ask
    wait_for_reply:
      result: said
      other: {category: Other, next: answer}
  - id: answer
    send_message: {text: "got @input.text"}
    next: ask
"""

URN = "tel:+15550001"
AT = 1_767_225_600.0  # the harness clock's start: replies are fresh


class HookedChannel(CapturingChannel):
    """Remembers what the core told it: messages accepted, template changes."""

    def __init__(self, name: str, bot: Bot) -> None:
        super().__init__(name, bot.store)
        self.accepted_ids: list[str] = []
        self.resyncs: list[bool] = []

    async def accepted(self, message: Message) -> None:
        self.accepted_ids.append(message.external_id)

    async def templates_changed(self, *, resync: bool) -> None:
        self.resyncs.append(resync)


@pytest.fixture
async def bot(make_bot: MakeBot) -> Bot:
    b = await make_bot()
    b.channels["cap"] = HookedChannel("cap", b)
    b.worker = b.new_worker()
    b.write("echo", ECHO)
    return b


def ingest_of(bot: Bot) -> Ingest:
    return Ingest(bot.store, bot.channels)


def hooked(bot: Bot) -> HookedChannel:
    channel = bot.channels["cap"]
    assert isinstance(channel, HookedChannel)
    return channel


def message(external_id: str, text: str = "hola", **fields: Any) -> Message:
    return Message("cap", fields.pop("urn", URN), external_id, AT, text, **fields)


async def test_unknown_urn_creates_the_contact_with_the_given_name(bot: Bot) -> None:
    await ingest_of(bot).accept([message("m1", contact_name="Ana Souza")])
    cid = await bot.store.contact_id_for_urn(URN)
    assert cid is not None
    contact = await bot.get_contact(cid)
    assert (contact["name"], contact["urns"], contact["created_on"]) == ("Ana Souza", [URN], AT)
    # a known URN keeps its contact (and its name)
    await ingest_of(bot).accept([message("m2", contact_name="Someone Else")])
    assert await bot.store.contact_id_for_urn(URN) == cid
    assert (await bot.get_contact(cid))["name"] == "Ana Souza"


async def test_a_redelivered_message_is_queued_and_answered_once(bot: Bot) -> None:
    ingest = ingest_of(bot)
    cid = await bot.contact(URN)
    await bot.start(cid, "echo")
    await bot.drain()
    first = await ingest.accept([message("wamid.1", "uno"), message("wamid.1", "uno")])
    again = await ingest.accept([message("wamid.1", "uno")])
    assert (first.queued, first.duplicates, again.queued, again.duplicates) == (1, 1, 0, 1)
    assert await bot.queue_len(cid) == 1
    assert hooked(bot).accepted_ids == ["wamid.1"]  # the hook hears of first deliveries only
    await bot.drain()
    assert await bot.texts(cid) == ["got uno"]
    # the same id on another channel is another message
    other = await ingest.accept([Message("other", URN, "wamid.1", AT, "dos")])
    assert other.queued == 1


async def test_the_reply_event_carries_what_the_channel_parsed(bot: Bot) -> None:
    await ingest_of(bot).accept(
        [
            message(
                "m1",
                "a caption",
                kind="image",
                payload="BTN_1",
                attachment=Attachment("media-1", "image/jpeg", caption="a caption"),
                location=Location(-12.05, -77.04, name="Lima"),
                reply_to="wamid.ours",
            ),
            message("m2", "", kind="reaction", reaction={"message_id": "x"}, is_reply=False),
        ]
    )
    cid = await bot.store.contact_id_for_urn(URN)
    assert cid is not None
    raw = await bot.redis.lrange(contact_key(cid, "q"), 0, -1)
    image, reaction = (json.loads(r) for r in raw)
    assert image == {
        "type": "reply",
        "text": "a caption",
        "channel": "cap",
        "urn": URN,
        "external_id": "m1",
        "msg_type": "image",
        "sent_at": AT,
        "at": AT,
        "payload": "BTN_1",
        # only the fields that carry something
        "media": {"id": "media-1", "mime_type": "image/jpeg", "caption": "a caption"},
        "location": {"latitude": -12.05, "longitude": -77.04, "name": "Lima"},
        "reply_to": "wamid.ours",
        "new_contact": True,  # the contact was made for this message: its first ever
    }
    assert reaction["record_only"] is True and reaction["reaction"] == {"message_id": "x"}
    assert "new_contact" not in reaction  # the contact existed by then


async def test_statuses_are_applied_monotonically(bot: Bot) -> None:
    cid = await bot.contact(URN)
    await bot.start(cid, "echo")
    await bot.drain()
    await ingest_of(bot).accept([message("in.1", "hola")])
    await bot.drain()
    (sent,) = await bot.messages(cid)
    ext = sent["external_id"]
    outcome = await ingest_of(bot).accept(
        [
            Status("cap", ext, "read", 1002.0),
            Status("cap", ext, "delivered", 1001.0),  # late: recorded, does not undo read
            Status("cap", "ext-nobody", "read", 1003.0),
        ]
    )
    assert (outcome.statuses, outcome.unknown_statuses) == (3, 1)
    (sent,) = await bot.messages(cid)
    assert sent["status"] == "read"
    assert (sent["read_on"], sent["delivered_on"]) == (1002.0, 1001.0)
    # a failure after read is ignored too, with its error
    await ingest_of(bot).accept([Status("cap", ext, "failed", 1004.0, {"code": "x"})])
    (sent,) = await bot.messages(cid)
    assert sent["status"] == "read" and "error" not in sent


async def test_template_updates_change_the_synced_template_or_ask_for_a_resync(bot: Bot) -> None:
    item = {"name": "promo", "language": "es", "status": "APPROVED", "components": []}
    await bot.store.save_templates("cap", [item])
    ingest = ingest_of(bot)
    await ingest.accept([TemplateUpdate("cap", "promo", "es", "REJECTED", "INVALID_FORMAT")])
    (stored,) = await bot.store.templates("cap")
    assert (stored["status"], stored["rejected_reason"]) == ("REJECTED", "INVALID_FORMAT")
    await ingest.accept([TemplateUpdate("cap", "new_one", "es", "APPROVED")])
    assert [t["name"] for t in await bot.store.templates("cap")] == ["promo"]
    assert hooked(bot).resyncs == [False, True]
