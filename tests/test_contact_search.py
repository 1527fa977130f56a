"""The contact search index (bot/store/search.py) through ``GET /api/v1/contacts?q=``: words of
the name, field values and URN digits, by prefix, case and accents aside; kept in step by
create, update, the engine's commit, delete and import; never a scan of all contacts."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from bot.core.contacts import new_record
from bot.store.keys import SEARCH, SEARCH_BUILT
from bot.store.search import contact_words, query_words
from tests.support.api import AUTH, Api, MakeApi, assert_error

RENAME = """\
name: Rename
nodes:
  - id: rename
    update_contact:
      name: "Renata Quispe"
      fields: {city: "Cusco"}
"""


async def create(api: Api, urn: str, **extra: Any) -> str:
    status, body = await api.post("/api/v1/contacts", {"urn": urn, **extra})
    assert status == 201, body
    return str(body["uuid"])


async def search(api: Api, q: str, **params: Any) -> list[str]:
    """The names a search finds, all pages (limit 1: every page boundary is crossed)."""
    names: list[str] = []
    cursor = None
    while True:
        query = {"q": q, "limit": 1, **params, **({"cursor": cursor} if cursor else {})}
        status, body = await api.get("/api/v1/contacts", params=query)
        assert status == 200, body
        names += [c["name"] for c in body["contacts"]]
        cursor = body["next"]
        if cursor is None:
            return names


def test_words_fold_case_and_accents() -> None:
    contact = {
        "uuid": "u",
        "name": "José Ñandú-Pérez",
        "urns": ["whatsapp:+51987654321", "ext:crm_42"],
        "fields": {"city": "São Paulo"},
    }
    assert contact_words(contact) == [
        "jose",
        "nandu",
        "perez",
        "51987654321",
        "987654321",
        "crm",
        "42",
        "sao",
        "paulo",
    ]
    assert query_words("+51 987-654") == ["51987654"]
    assert query_words("PÉREZ jo") == ["perez", "jo"]
    assert query_words("  ,; ") == []


async def test_search_by_name_number_and_field(api: Api) -> None:
    await create(api, "whatsapp:+51987654321", name="José Álvarez", fields={"city": "Lima"})
    await create(api, "whatsapp:+5511987654321", name="Ana Anabel Souza", fields={"city": "Recife"})
    await create(api, "telegram:777", name="Joaquín Souza", fields={"city": "São Paulo"})
    assert await search(api, "jose") == ["José Álvarez"]
    assert await search(api, "ALV") == ["José Álvarez"]
    # a contact with two words starting "ana" is listed once
    assert await search(api, "ana") == ["Ana Anabel Souza"]
    assert sorted(await search(api, "souza")) == ["Ana Anabel Souza", "Joaquín Souza"]
    assert await search(api, "souza jo") == ["Joaquín Souza"]
    assert await search(api, "sao") == ["Joaquín Souza"]  # a field's value
    assert await search(api, "+51 987") == ["José Álvarez"]  # a number, as typed
    assert await search(api, "987 654") == ["José Álvarez"]  # without the country code
    assert await search(api, "5511") == ["Ana Anabel Souza"]
    assert await search(api, "777") == ["Joaquín Souza"]
    assert await search(api, "zz") == []
    assert await search(api, "recife souza", status="opted_out") == []


async def test_search_follows_update_delete_and_import(api: Api) -> None:
    cid = await create(api, "whatsapp:+51987654321", name="Pedro Castillo")
    status, _ = await api.request(
        "PATCH", f"/api/v1/contacts/{cid}", {"name": "Pablo Neruda", "fields": {"city": "Temuco"}}
    )
    assert status == 200
    assert await search(api, "pedro") == []
    assert await search(api, "nerud") == ["Pablo Neruda"]
    assert await search(api, "temuco") == ["Pablo Neruda"]
    csv = "urn,name,field:city\nwhatsapp:+5511999990001,Lúcia Reis,Olinda\n"
    status, report = await api.post(
        "/api/v1/contacts/import", csv, headers={**AUTH, "Content-Type": "text/csv"}
    )
    assert status == 200 and report["created"] == 1, report
    assert await search(api, "lucia olin") == ["Lúcia Reis"]
    status, _ = await api.request(
        "PATCH", f"/api/v1/contacts/{cid}", {"urns": ["whatsapp:+51911222333", "telegram:4455"]}
    )
    assert status == 200
    assert await search(api, "987654") == []  # the number it no longer has
    assert await search(api, "911 222") == await search(api, "4455") == ["Pablo Neruda"]
    status, _ = await api.request("DELETE", f"/api/v1/contacts/{cid}")
    assert status == 200
    assert await search(api, "pablo") == []
    assert [m async for m in api.store.redis.zscan_iter(SEARCH, match=f"* {cid}")] == []


async def test_search_follows_the_engine(make_api: MakeApi) -> None:
    api = await make_api({"rename": RENAME}, drive=True)
    cid = await create(api, "console:rq", name="Rosa")
    status, body = await api.post(f"/api/v1/contacts/{cid}/start", {"flow": "rename"})
    assert status in (200, 201, 202), body
    await api.drain()
    assert await search(api, "rosa") == []
    assert await search(api, "quispe cus") == ["Renata Quispe"]


async def test_filters_with_search(api: Api) -> None:
    a = await create(api, "console:a", name="Ana Lima", groups=["VIP"])
    await create(api, "console:b", name="Ana Reyes", status="opted_out")
    assert await search(api, "ana", group="VIP") == ["Ana Lima"]
    assert await search(api, "ana", status="opted_out") == ["Ana Reyes"]
    assert sorted(await search(api, "ana", in_flow="false")) == ["Ana Lima", "Ana Reyes"]
    assert await search(api, "ana", in_flow="true") == []
    assert a
    status, body = await api.get("/api/v1/contacts", params={"q": "x" * 201})
    assert_error(status, body, 400, "bad_request")
    status, body = await api.get("/api/v1/contacts", params={"q": "ana", "cursor": "bm9wZQ"})
    assert_error(status, body, 400, "bad_request")


async def test_search_reads_no_other_contact(api: Api) -> None:
    """6,000 contacts that do not match, then one that does: a walk over the contacts would
    stop after 5,000 (MAX_SCANNED) with an empty page; the index answers at once."""
    store = api.store
    for chunk in range(6):
        records = [
            (f"ext:n{chunk}-{k}", {**new_record(f"ext:n{chunk}-{k}", 1.0), "name": "Maria"})
            for k in range(1000)
        ]
        await store.create_contacts(records)
    await create(api, "console:z", name="Zoila Flores")
    status, body = await api.get("/api/v1/contacts", params={"q": "zoi"})
    assert status == 200
    assert [c["name"] for c in body["contacts"]] == ["Zoila Flores"] and body["next"] is None
    status, body = await api.get("/api/v1/contacts", params={"q": "mari", "limit": 500})
    assert len(body["contacts"]) == 500 and body["next"]


async def test_index_rebuilt_when_missing(api: Api, redis: Redis) -> None:
    await create(api, "console:a", name="Inés Gómez")
    await redis.delete(SEARCH, SEARCH_BUILT)  # as a version without the index left it
    assert await search(api, "ines") == []
    assert await api.store.ensure_search_index() == 1
    assert await search(api, "gomez ine") == ["Inés Gómez"]
    assert await api.store.ensure_search_index() == 0
