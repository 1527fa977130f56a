"""Store details not covered through the engine: contact creation by URN."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from bot.store import Store
from bot.store.keys import contact_key, urn_key


async def test_concurrent_first_messages_make_one_contact(redis: Redis) -> None:
    store = Store(redis)
    ids = await asyncio.gather(
        *(store.ensure_contact("whatsapp:+5511900000001", "Ana", 1.0) for _ in range(20))
    )
    assert len({cid for cid, _ in ids}) == 1
    assert [created for _, created in ids].count(True) == 1  # one of them made it: a new contact
    contact = await store.get_contact(ids[0][0])
    assert contact is not None and contact["name"] == "Ana"
    assert contact["urns"] == ["whatsapp:+5511900000001"]


async def test_an_index_entry_without_its_record_is_repaired(redis: Redis) -> None:
    store = Store(redis)
    cid, created = await store.ensure_contact("tel:+1555", "Bruno", 1.0)
    assert created
    await redis.delete(contact_key(cid, "contact"))
    assert (await store.ensure_contact("tel:+1555", "Bruno B", 2.0))[0] == cid
    contact, created = await store.contact_for_urn("tel:+1555")
    assert not created and contact["uuid"] == cid and contact["name"] == "Bruno B"
    assert contact["groups"] == [] and contact["fields"] == {}  # still lists and objects
    assert (await redis.get(urn_key("tel:+1555"))).decode() == cid
