"""Store details not covered through the engine: contact creation by URN (the webhook's
inbound.lua and contact_for_urn.lua)."""

from __future__ import annotations

import asyncio
import json

from redis.asyncio import Redis

from bot.store import Inbound, Store
from bot.store.keys import CONTACTS, SEARCH, contact_key, created_prefix, urn_key


async def first_message(
    store: Store, urn: str, name: str, at: float, wamid: str
) -> tuple[str, bool]:
    """The webhook's call for one message: (contact uuid, created for it)."""
    event = {"type": "reply", "text": "hola", "at": at}
    outcomes, claims = await store.inbound(
        [Inbound(f"in:wa:{wamid}", 60, urn, name, at, event)], 0, 60_000, 100
    )
    assert claims == []  # no room was given: nothing claimed
    (outcome,) = outcomes
    assert outcome is not None
    return outcome


async def test_concurrent_first_messages_make_one_contact(redis: Redis) -> None:
    store = Store(redis)
    ids = await asyncio.gather(
        *(first_message(store, "whatsapp:+5511900000001", "Ana", 1.0, f"w{n}") for n in range(20))
    )
    assert len({cid for cid, _ in ids}) == 1
    assert [created for _, created in ids].count(True) == 1  # one of them made it: a new contact
    contact = await store.get_contact(ids[0][0])
    assert contact is not None and contact["name"] == "Ana"
    assert contact["urns"] == ["whatsapp:+5511900000001"]
    # each message queued once, only the first one saying the contact is new
    queued = [json.loads(e) for e in await redis.lrange(contact_key(ids[0][0], "q"), 0, -1)]
    assert len(queued) == 20 and [e.get("new_contact", False) for e in queued].count(True) == 1
    assert queued[0]["new_contact"] is True


async def test_an_index_entry_without_its_record_is_repaired(redis: Redis) -> None:
    store = Store(redis)
    cid, created = await first_message(store, "tel:+1555", "Bruno", 1.0, "w1")
    assert created
    await redis.delete(contact_key(cid, "contact"))
    await redis.delete(CONTACTS, SEARCH)
    assert await first_message(store, "tel:+1555", "Bruno B", 2.0, "w2") == (cid, True)
    # its index entries are back, under the indexed uuid
    assert await redis.zrange(CONTACTS, 0, -1) == [f"{created_prefix(2.0)}|{cid}".encode()]
    assert await redis.zrange(SEARCH, 0, -1) == [
        f"{word} {cid}".encode() for word in sorted(["1555", "555", "bruno", "b"])
    ]
    contact, created = await store.contact_for_urn("tel:+1555")
    assert not created and contact["uuid"] == cid and contact["name"] == "Bruno B"
    assert contact["groups"] == [] and contact["fields"] == {}  # still lists and objects
    assert (await redis.get(urn_key("tel:+1555"))).decode() == cid
