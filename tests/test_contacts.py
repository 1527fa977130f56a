"""Contacts, groups, CSV import and opt-out over real HTTP on the test Valkey, with the app's
worker running (the ``api`` fixture of tests/conftest.py)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from bot.cli.main import main as cli_main
from bot.core.config import load_config
from bot.engine.optout import OptOut
from bot.store import ContactBusy
from bot.store.keys import CONTACTS, TIMERS, contact_key, members_key, urn_key
from bot.work.runtime import limits_of
from tests.support.api import AUTH, MAX_BODY, Api, assert_error
from tests.support.waiting import wait_for

GROUPS_FLOW = """\
name: Groups
nodes:
  - id: join
    add_to_group: [VIP, Beta]
    next: leave
  - id: leave
    remove_from_group: Beta
"""


async def create(api: Api, urn: str, **extra: Any) -> dict[str, Any]:
    status, body = await api.request("POST", "/api/v1/contacts", json={"urn": urn, **extra})
    assert status == 201, body
    return dict(body)


async def contact_keys(redis: Redis, cid: str) -> list[bytes]:
    return [k async for k in redis.scan_iter(match=contact_key(cid, "*"))]


# -- URNs and create ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("whatsapp:+55 11 98765-4321", "whatsapp:+5511987654321"),
        ("whatsapp:5511987654321", "whatsapp:+5511987654321"),
        ("tel:+1 (415) 555-2671", "tel:+14155552671"),
        ("telegram:123456", "telegram:123456"),
        ("ext:crm-42", "ext:crm-42"),
        ("WhatsApp:bsuid:PE.4071823665", "whatsapp:bsuid:PE.4071823665"),
    ],
)
async def test_create_normalises_urns(api: Api, given: str, stored: str) -> None:
    contact = await create(api, given, name="Ana", language="pt", fields={"city": "Lima"})
    assert contact["urns"] == [stored]
    assert (contact["name"], contact["language"], contact["status"]) == ("Ana", "pt", "active")
    assert contact["fields"] == {"city": "Lima"}
    # a second contact for the URN, however it is written, is refused with the existing uuid
    for body in ({"urn": stored, "name": "Other"}, {"urns": [given]}):
        status, again = await api.request("POST", "/api/v1/contacts", json=body)
        assert_error(status, again, 409, "urn_in_use")
        assert again["error"]["details"] == {"contact": contact["uuid"], "urn": stored}
    status, found = await api.request("GET", "/api/v1/contacts", params={"urn": given})
    assert (status, [c["uuid"] for c in found["contacts"]]) == (200, [contact["uuid"]])
    status, same = await api.request("GET", f"/api/v1/contacts/{contact['uuid']}")
    assert (same["name"], same["fields"]) == ("Ana", {"city": "Lima"})  # nothing was changed


@pytest.mark.parametrize(
    "urn",
    [
        "whatsapp:+5511",
        "tel:+999123",
        "whatsapp:hello",
        "telegram:abc",
        "ext:a b",
        "fax:123",
        "nourn",
        7,
    ],
)
async def test_invalid_urns_are_refused(api: Api, urn: Any) -> None:
    status, body = await api.request("POST", "/api/v1/contacts", json={"urn": urn})
    assert_error(status, body, 400, "invalid_body" if urn == 7 else "invalid_urn")
    assert await api.runtime.redis.zcard(CONTACTS) == 0  # type: ignore[union-attr]


async def test_bad_bodies(api: Api) -> None:
    headers = {**AUTH, "Content-Type": "application/json"}
    cid = (await create(api, "ext:a"))["uuid"]
    for method, path in [
        ("POST", "/api/v1/contacts"),
        ("PATCH", f"/api/v1/contacts/{cid}"),
        ("POST", "/api/v1/groups"),
    ]:
        status, body = await api.request(method, path, data=b"{nope", headers=headers)
        assert_error(status, body, 400, "invalid_body")
        big = {"name": "x" * MAX_BODY}
        status, body = await api.request(method, path, json=big)
        assert_error(status, body, 413, "body_too_large")
    wrong = [
        {"status": "gone"},
        {"fields": []},
        {"fields": {"Bad Key": "x"}},
        {"fields": {"ok": True}},
        {"language": "Portuguese"},
        {"age": 3},
        {"name": 0},
        {"name": None},
    ]
    for patch in wrong:
        status, body = await api.request("PATCH", f"/api/v1/contacts/{cid}", json=patch)
        assert_error(status, body, 400, "invalid_body")
        assert body["error"]["details"]["errors"][0]["field"].startswith(next(iter(patch)))
    for create_body in (
        {"urn": "ext:b", "x": 1},
        {"urn": "ext:b", "name": 0},
        {"urn": "ext:b", "fields": []},
        {"name": "no urn"},
        {"urn": "ext:b", "urns": ["ext:c"]},
    ):
        status, body = await api.request("POST", "/api/v1/contacts", json=create_body)
        assert_error(status, body, 400, "invalid_body")
    assert await api.runtime.store.contact_id_for_urn("ext:b") is None


MISSING = "0b5f2c2e-8a4b-4e0e-9a43-2d9f6c1a7f10"


async def test_unknown_contact_and_group(api: Api) -> None:
    for method in ("GET", "PATCH", "DELETE"):
        status, body = await api.request(method, f"/api/v1/contacts/{MISSING}", json={"name": "x"})
        assert_error(status, body, 404, "unknown_contact")
    for method, path, payload in [
        ("PATCH", "/api/v1/groups/Nope", {"name": "x"}),
        ("DELETE", "/api/v1/groups/Nope", None),
        ("POST", "/api/v1/groups/Nope/members", {"contacts": []}),
        ("DELETE", "/api/v1/groups/Nope/members", {"contacts": []}),
        ("GET", "/api/v1/contacts?group=Nope", None),
    ]:
        status, body = await api.request(method, path, json=payload)
        assert_error(status, body, 404, "unknown_group")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/contacts"),
        ("POST", "/api/v1/contacts"),
        ("PATCH", f"/api/v1/contacts/{MISSING}"),
        ("DELETE", f"/api/v1/contacts/{MISSING}"),
        ("POST", "/api/v1/contacts/import"),
        ("GET", "/api/v1/groups"),
        ("POST", "/api/v1/groups"),
        ("PATCH", "/api/v1/groups/G"),
        ("DELETE", "/api/v1/groups/G"),
        ("POST", "/api/v1/groups/G/members"),
        ("DELETE", "/api/v1/groups/G/members"),
    ],
)
@pytest.mark.parametrize("token", [None, "Bearer wrong"])
async def test_contact_routes_need_the_token(
    api: Api, method: str, path: str, token: str | None
) -> None:
    headers = {"Authorization": token} if token else {}
    status, body = await api.request(method, path, json={"urn": "ext:x"}, headers=headers)
    assert_error(status, body, 401, "unauthorized")


# -- update, list ------------------------------------------------------------------------------
async def test_patch_merges_fields(api: Api) -> None:
    cid = (await create(api, "ext:p", name="Ana", fields={"a": "1", "b": "2"}))["uuid"]
    payload = {"name": "Ana María", "status": "blocked", "fields": {"b": None, "c": 3}}
    status, body = await api.request("PATCH", f"/api/v1/contacts/{cid}", json=payload)
    assert status == 200, body
    assert body["fields"] == {"a": "1", "c": "3"}
    assert (body["name"], body["status"]) == ("Ana María", "blocked")
    status, body = await api.request("GET", f"/api/v1/contacts/{cid}")
    assert (body["fields"], body["status"]) == ({"a": "1", "c": "3"}, "blocked")


async def test_cursor_paging_and_filters(api: Api) -> None:
    store = api.runtime.store
    made = []
    for n in range(25):  # created_on 1000..1024: a known order
        contact, _ = await store.contact_for_urn(
            f"ext:{n}", f"{'Ana' if n % 2 else 'Bruno'} {n}", 1000.0 + n
        )
        made.append(contact["uuid"])
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"limit": "10", **({"cursor": cursor} if cursor else {})}
        status, body = await api.request("GET", "/api/v1/contacts", params=params)
        assert status == 200, body
        seen += [c["uuid"] for c in body["contacts"]]
        pages += 1
        cursor = body["next"]
        if cursor is None:
            break
        # a contact created while paging lands after the cursor: pages stay stable
        if pages == 1:
            await store.contact_for_urn("ext:late", "Late", 5000.0)
    assert pages == 3
    assert seen == [*made, (await store.contact_id_for_urn("ext:late"))]

    async def listed(**params: str) -> list[str]:
        status, body = await api.request("GET", "/api/v1/contacts", params=params)
        assert status == 200, body
        return [c["name"] for c in body["contacts"]]

    assert len(await listed(name="ana", limit="100")) == 12
    assert await listed(created_since="1023", limit="100") == ["Ana 23", "Bruno 24", "Late"]
    await api.request("PATCH", f"/api/v1/contacts/{made[3]}", json={"status": "opted_out"})
    assert await listed(status="opted_out") == ["Ana 3"]
    await api.request("POST", "/api/v1/groups", json={"name": "G"})
    await api.request("POST", "/api/v1/groups/G/members", json={"contacts": made[5:8]})
    assert await listed(group="G") == ["Ana 5", "Bruno 6", "Ana 7"]
    status, body = await api.request("GET", "/api/v1/contacts", params={"limit": "0"})
    assert_error(status, body, 400, "bad_request")


# -- concurrency with the engine ---------------------------------------------------------------
async def test_api_write_waits_for_a_sprint_and_neither_is_lost(api: Api, redis: Redis) -> None:
    store = api.runtime.store
    cid = (await create(api, "ext:c", name="Ana"))["uuid"]
    [claim] = await store.claim([cid], 60_000, 10)  # a worker's sprint has read the contact
    assert claim is not None and claim.contact is not None
    with pytest.raises(ContactBusy):
        await store.update_contacts([cid], lambda c: {**c, "name": "X"}, 1.0, wait=0.05)

    async def reads() -> int:  # each try of a contact write reads the contact with one MGET
        stats = await redis.info("commandstats")
        return int(stats.get("cmdstat_mget", {}).get("calls", 0))

    before = await reads()
    patch = asyncio.create_task(
        api.request("PATCH", f"/api/v1/contacts/{cid}", json={"fields": {"plan": "gold"}})
    )

    async def retried() -> bool:  # the request reached the server, found the lock, tried again
        return await reads() >= before + 3

    await wait_for(retried, "the PATCH to find the contact locked and retry")
    assert not patch.done()
    from bot.store import Commit

    engine_copy = {**claim.contact, "last_seen_on": 99.0}
    [result] = await store.commit([Commit(cid, claim.token, 0, contact=engine_copy)])
    assert result == 0
    status, body = await patch
    assert status == 200, body
    final = await store.get_contact(cid)
    assert final is not None
    assert (final["last_seen_on"], final["fields"]) == (99.0, {"plan": "gold"})


async def test_concurrent_patches_and_replies_lose_nothing(api: Api) -> None:
    store = api.runtime.store
    cid = (await create(api, "console:busy", name="Ana"))["uuid"]
    n = 20

    async def reply(i: int) -> None:
        event = {"type": "reply", "text": f"r{i}", "channel": "console", "at": 10.0 + i}
        await store.enqueue(cid, event)

    async def patch(i: int) -> tuple[int, Any]:
        return await api.request("PATCH", f"/api/v1/contacts/{cid}", json={"fields": {f"k{i}": i}})

    results = await asyncio.gather(*(f(i) for i in range(n) for f in (reply, patch)))
    assert all(r[0] == 200 for r in results if r is not None)

    async def all_replies() -> bool:
        return len(await store.messages(cid)) == n

    await wait_for(all_replies, what="every reply to be applied")
    final = await store.get_contact(cid)
    assert final is not None
    assert final["fields"] == {f"k{i}": str(i) for i in range(n)}
    assert final["last_channel"] == "console" and final["last_seen_on"] > 0


# -- delete ------------------------------------------------------------------------------------
async def test_delete_removes_everything(api: Api, redis: Redis) -> None:
    contact = await create(api, "console:del", name="Ana", groups=["G"])
    cid = contact["uuid"]
    other = await create(api, "console:keep", groups=["G"])
    await api.request("POST", f"/api/v1/contacts/{cid}/start", json={"flow": "greeting"})

    async def waiting() -> bool:
        return bool(await redis.zrange(TIMERS, 0, -1))

    await wait_for(waiting, what="the greeting run to wait")
    assert await contact_keys(redis, cid)
    status, body = await api.request("DELETE", f"/api/v1/contacts/{cid}")
    assert (status, body) == (200, {"deleted": cid})
    assert await contact_keys(redis, cid) == []
    assert await redis.get(urn_key("console:del")) is None
    assert [m async for m in redis.zscan_iter(TIMERS) if m[0].startswith(cid.encode())] == []
    gid = (await api.runtime.store.group_ids(["G"]))["G"]
    assert await redis.smembers(members_key(gid)) == {other["uuid"].encode()}
    assert len(await redis.zrange(CONTACTS, 0, -1)) == 1
    status, body = await api.request("GET", f"/api/v1/contacts/{cid}")
    assert_error(status, body, 404, "unknown_contact")
    # the URN is free again: a new contact
    assert (await create(api, "console:del"))["uuid"] != cid


# -- groups ------------------------------------------------------------------------------------
async def test_groups_lifecycle(api: Api, redis: Redis) -> None:
    a = (await create(api, "ext:a"))["uuid"]
    b = (await create(api, "whatsapp:+5511987650001"))["uuid"]
    status, body = await api.request("POST", "/api/v1/groups", json={"name": "Clientes"})
    assert (status, body["name"], body["count"]) == (201, "Clientes", 0)
    clientes = body["uuid"]
    status, body = await api.request("POST", "/api/v1/groups", json={"name": "Clientes"})
    assert_error(status, body, 409, "group_exists")
    status, body = await api.request("POST", "/api/v1/groups", json={"name": " x"})
    assert_error(status, body, 400, "invalid_body")
    status, body = await api.request("POST", "/api/v1/groups", json={"name": 0})
    assert_error(status, body, 400, "invalid_body")
    assert body["error"]["details"]["errors"][0]["field"] == "name"

    status, body = await api.request(
        "POST", "/api/v1/groups/Clientes/members", json={"contacts": [a, MISSING]}
    )
    assert (status, body["added"]) == (200, 1)
    assert [e["code"] for e in body["errors"]] == ["unknown_contact"]
    urns = ["whatsapp:+55 11 98765-0001", "whatsapp:+5511987650002", "whatsapp:+55"]
    status, body = await api.request("POST", "/api/v1/groups/Clientes/members", json={"urns": urns})
    assert (status, body["added"]) == (200, 2)  # b, and a new contact for ...0002
    assert [e["code"] for e in body["errors"]] == ["invalid_urn"]
    new = await api.runtime.store.contact_id_for_urn("whatsapp:+5511987650002")
    assert new is not None

    status, body = await api.request("GET", "/api/v1/groups")
    assert [(g["name"], g["count"]) for g in body["groups"]] == [("Clientes", 3)]
    for cid in (a, b, new):
        assert (await api.runtime.store.get_contact(cid))["groups"] == ["Clientes"]  # type: ignore[index]

    status, body = await api.request(
        "DELETE", "/api/v1/groups/Clientes/members", json={"contacts": [b]}
    )
    assert (status, body["removed"]) == (200, 1)
    assert (await api.runtime.store.get_contact(b))["groups"] == []  # type: ignore[index]

    status, body = await api.request("PATCH", "/api/v1/groups/Clientes", json={"name": "VIP"})
    assert (status, body["name"]) == (200, "VIP")
    assert (await api.runtime.store.get_contact(a))["groups"] == ["VIP"]  # type: ignore[index]
    status, body = await api.request("GET", "/api/v1/groups")
    assert [(g["name"], g["count"]) for g in body["groups"]] == [("VIP", 2)]
    status, body = await api.request("POST", "/api/v1/groups/Clientes/members", json={"urns": []})
    assert_error(status, body, 404, "unknown_group")

    status, body = await api.request("GET", f"/api/v1/groups/{clientes}")
    assert (status, body["uuid"], body["name"], body["count"]) == (200, clientes, "VIP", 2)
    status, body = await api.request("DELETE", f"/api/v1/groups/{clientes}")
    assert (status, body) == (200, {"deleted": clientes})
    assert (await api.runtime.store.get_contact(a))["groups"] == []  # type: ignore[index]
    assert [k async for k in redis.scan_iter(match="chasqui:group:*")] == []
    status, body = await api.request("GET", "/api/v1/groups")
    assert body == {"groups": [], "next": None}


async def test_flow_nodes_keep_group_sets_in_step(api: Api, redis: Redis) -> None:
    (api.flows / "groups.yaml").write_text(GROUPS_FLOW, encoding="utf-8")
    api.runtime.load_flows()
    cid = (await create(api, "console:g", groups=["Old"]))["uuid"]
    status, _ = await api.request("POST", f"/api/v1/contacts/{cid}/start", json={"flow": "groups"})
    assert status == 202

    async def done() -> bool:
        return bool(await api.runtime.store.ended_runs(cid))

    await wait_for(done, what="the groups flow to complete")
    contact = await api.runtime.store.get_contact(cid)
    assert contact is not None and contact["groups"] == ["Old", "VIP"]
    status, body = await api.request("GET", "/api/v1/groups")
    counts = {g["name"]: g["count"] for g in body["groups"]}
    assert counts == {"Old": 1, "VIP": 1}  # Beta: added then removed in one sprint, net nothing
    status, body = await api.request("GET", "/api/v1/contacts", params={"group": "VIP"})
    assert [c["uuid"] for c in body["contacts"]] == [cid]


# -- CSV import --------------------------------------------------------------------------------
CSV = """\
urn,name,language,field:city,groups
whatsapp:+5511987650010,Ana,pt,São Paulo,Clientes;VIP
tel:+5511987650011,"Bruno ""B"" Silva",es,"Rua 1
Apto 2",Clientes
whatsapp:+5511,Bad,pt,,
telegram:77,Carla,xx-not-a-language,,
ext:crm-1,Dora,,Lima,
"""


async def post_csv(api: Api, text: str, **params: str) -> tuple[int, Any]:
    headers = {**AUTH, "Content-Type": "text/csv"}
    return await api.request(
        "POST", "/api/v1/contacts/import", data=text.encode(), headers=headers, params=params
    )


async def test_import_reports_rows_and_is_idempotent(api: Api, redis: Redis) -> None:
    status, body = await post_csv(api, CSV, group="Imported")
    assert status == 200, body
    assert (body["rows"], body["created"], body["updated"], body["failed"]) == (5, 3, 0, 2)
    assert [(e["row"], e["code"]) for e in body["errors"]] == [(5, "invalid_urn"), (6, "bad_row")]
    store = api.runtime.store
    cid = await store.contact_id_for_urn("tel:+5511987650011")
    bruno = await store.get_contact(cid)  # type: ignore[arg-type]
    assert bruno is not None
    assert (bruno["name"], bruno["language"]) == ('Bruno "B" Silva', "es")
    assert bruno["fields"] == {"city": "Rua 1\nApto 2"}  # a quoted cell across lines
    assert bruno["groups"] == ["Imported", "Clientes"]
    status, groups = await api.request("GET", "/api/v1/groups")
    counts = {g["name"]: g["count"] for g in groups["groups"]}
    assert counts == {"Imported": 3, "Clientes": 2, "VIP": 1}
    keys_before = await redis.dbsize()

    # again, as a multipart upload, with one change: updates, no new contacts or members
    form = aiohttp.FormData()
    form.add_field("file", CSV.replace("Dora", "Dora D"), filename="c.csv")
    status, body = await api.request(
        "POST", "/api/v1/contacts/import", data=form, params={"group": "Imported"}
    )
    assert status == 200, body
    assert (body["rows"], body["created"], body["updated"], body["failed"]) == (5, 0, 3, 2)
    assert await redis.dbsize() == keys_before
    status, groups = await api.request("GET", "/api/v1/groups")
    assert {g["name"]: g["count"] for g in groups["groups"]} == counts
    status, found = await api.request("GET", "/api/v1/contacts", params={"urn": "ext:crm-1"})
    [dora] = found["contacts"]
    assert (dora["name"], dora["fields"]) == ("Dora D", {"city": "Lima"})


async def test_import_with_a_bad_header_or_no_file(api: Api) -> None:
    status, body = await post_csv(api, "name,language\nAna,es\n")
    assert_error(status, body, 400, "bad_request")
    status, body = await post_csv(api, "urn,colour\next:1,red\n")
    assert_error(status, body, 400, "bad_request")
    status, body = await post_csv(api, "")
    assert_error(status, body, 400, "bad_request")


async def test_import_is_not_held_by_the_body_limit(api: Api) -> None:
    rows = "".join(f"ext:big-{n},Name {n}\n" for n in range(3000))  # far over MAX_BODY
    status, body = await post_csv(api, "urn,name\n" + rows)
    assert (status, body["created"], body["failed"]) == (200, 3000, 0)


def test_cli_import(tmp_path: Path, valkey_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[redis]\nurl = "{valkey_url}"\n', encoding="utf-8")
    csv_file = tmp_path / "c.csv"
    csv_file.write_text("phone,name\n+5511987659990,Eva\n123,Bad\n", encoding="utf-8")
    code = cli_main(
        ["--config", str(config), "contacts", "import", str(csv_file), "--group", "Cli"]
    )
    out = capsys.readouterr().out
    assert code == 1, out
    assert f"{csv_file}:3: invalid_urn" in out
    assert "2 rows: " in out and "1 failed" in out
    redis = SyncRedis.from_url(valkey_url)
    try:
        cid = redis.get(urn_key("whatsapp:+5511987659990"))
        assert cid is not None
        contact = json.loads(redis.get(contact_key(cid.decode(), "contact")) or b"{}")
        assert (contact["name"], contact["groups"]) == ("Eva", ["Cli"])
    finally:
        redis.close()


# -- opt-out -----------------------------------------------------------------------------------
def test_stop_words_match_the_whole_message_folded() -> None:
    rules = OptOut()
    assert rules.match(" Stop! ") == ("stop", "es")
    assert rules.match("sáir") == ("stop", "pt")
    assert rules.match("unsubscribe") == ("stop", "en")
    assert rules.match("Voltar") == ("start", "pt")
    assert rules.match("please stop") is None
    custom = OptOut(stop_words={"es": ("NO MÁS",)}, start_words={})
    assert custom.match("no mas") == ("stop", "es")
    assert custom.match("stop") is None


def test_stop_words_from_the_config(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[contacts]\nstop_words = {es = ["NO MÁS"]}\nstop_confirmation = {es = "Chau"}\n',
        encoding="utf-8",
    )
    rules = limits_of(load_config(config)).opt_out
    assert rules.match("no mas") == ("stop", "es")
    assert rules.match("baja") is None  # the es list was replaced
    assert rules.match("sair") == ("stop", "pt")  # other languages keep their defaults
    assert rules.stop_confirmation["es"] == "Chau"


async def test_opt_out_interrupts_confirms_once_and_opt_in(api: Api) -> None:
    store = api.runtime.store
    cid = (await create(api, "console:o", name="Ana", language="pt"))["uuid"]
    await api.request("POST", f"/api/v1/contacts/{cid}/start", json={"flow": "greeting"})

    async def outbound() -> list[dict[str, Any]]:
        return [m for m in await store.messages(cid) if m["direction"] == "out"]

    async def sent(n: int) -> list[dict[str, Any]] | None:
        out = await outbound()
        return out if len(out) == n and all(m["status"] != "queued" for m in out) else None

    await wait_for(lambda: sent(1), what="the greeting")
    await store.enqueue(cid, {"type": "reply", "text": "PARAR", "channel": "console", "at": 1})
    out = await wait_for(lambda: sent(2), what="the opt-out confirmation")
    assert out[1]["text"].startswith("Pronto") and out[1]["status"] == "sent"
    contact = await store.get_contact(cid)
    assert contact is not None and contact["status"] == "opted_out"
    [run] = await store.ended_runs(cid)
    assert (run["status"], run["errors"][-1]["message"]) == ("interrupted", "opted out")

    # again: recorded, not confirmed twice; a start skips the opted-out contact
    await store.enqueue(cid, {"type": "reply", "text": "stop", "channel": "console", "at": 2})

    async def opt_outs() -> list[str | None]:
        inbound = [m for m in await store.messages(cid) if m["direction"] == "in"]
        actions = [m.get("action") for m in inbound]
        return actions if len(actions) == 2 else []

    assert await wait_for(opt_outs, what="the second stop") == ["opt_out", "opt_out"]
    _, start = await api.request("POST", f"/api/v1/contacts/{cid}/start", json={"flow": "greeting"})

    async def finished() -> dict[str, Any] | None:
        _, body = await api.request("GET", f"/api/v1/starts/{start['uuid']}")
        return body if body["status"] == "completed" else None

    counts = (await wait_for(finished, what="the start"))["counts"]
    assert (counts["skipped"], counts["skipped_by_reason"]["opted_out"]) == (1, 1)
    assert len(await outbound()) == 2  # nothing sent to the opted-out contact

    await store.enqueue(cid, {"type": "reply", "text": "Voltar", "channel": "console", "at": 3})
    out = await wait_for(lambda: sent(3), what="the opt-in confirmation")
    assert out[2]["text"].startswith("Pronto: você voltará")
    contact = await store.get_contact(cid)
    assert contact is not None and contact["status"] == "active"
