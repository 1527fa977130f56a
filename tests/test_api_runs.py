"""``GET /api/v1/runs`` and ``GET /api/v1/flows/<id>/stats`` over real HTTP, with the app's own
worker running the shipped-style ``greeting`` flow (the ``api`` fixture of tests/conftest.py)."""

from __future__ import annotations

from typing import Any

from tests.support.api import AUTH, Api, assert_error, new_contact
from tests.support.waiting import wait_for


async def runs(api: Api, **params: Any) -> list[dict[str, Any]]:
    status, body = await api.get("/api/v1/runs", params=params)
    assert status == 200, body
    assert set(body) == {"runs", "next"}
    found: list[dict[str, Any]] = body["runs"]
    return found


async def start(api: Api, cid: str) -> None:
    status, body = await api.post(f"/api/v1/contacts/{cid}/start", json={"flow": "greeting"})
    assert status == 202, body


async def reply(api: Api, cid: str, text: str) -> None:
    now = api.runtime.clock.now()
    await api.runtime.store.enqueue(cid, {"type": "reply", "text": text, "at": now})


async def settle(api: Api, status: str, count: int) -> list[dict[str, Any]]:
    async def check() -> list[dict[str, Any]] | None:
        found = await runs(api, flow="greeting", status=status)
        return found if len(found) == count else None

    settled: list[dict[str, Any]] = await wait_for(check, what=f"{count} {status} runs")
    return settled


async def test_runs_filtered_by_status_newest_first_with_their_contact(api: Api) -> None:
    cids = [await new_contact(api, f"console:{i}", f"C {i}") for i in range(4)]
    for cid in cids:
        await start(api, cid)
    waiting = await settle(api, "waiting", 4)
    assert {r["contact"] for r in waiting} == set(cids)
    # newest first; runs begun in the same millisecond by contact, as the index orders them
    keys = [(r["created_on"], r["contact"]) for r in waiting]
    assert keys == sorted(keys, reverse=True)
    assert all(r["flow"] == "greeting" and r["path"][-1][0] == "ask" for r in waiting)
    for cid in cids[:2]:
        await reply(api, cid, "hola")
    completed = await settle(api, "completed", 2)
    assert {r["contact"] for r in completed} == set(cids[:2])
    assert all(r["results"]["answer"]["category"] == "Any" for r in completed)
    assert {r["contact"] for r in await runs(api, status="waiting")} == set(cids[2:])
    assert await runs(api, status="active") == []  # waiting is not active
    everything = await runs(api)
    assert len(everything) == 4 and {r["status"] for r in everything} == {"waiting", "completed"}
    assert [r["created_on"] for r in everything] == sorted(
        (r["created_on"] for r in everything), reverse=True
    )
    await start(api, cids[3])  # interrupts its waiting run
    interrupted = await settle(api, "interrupted", 1)
    assert interrupted[0]["contact"] == cids[3]


async def test_runs_pages_cover_everything_once(api: Api) -> None:
    cids = [await new_contact(api, f"console:{i}") for i in range(5)]
    for cid in cids:
        await start(api, cid)
    await settle(api, "waiting", 5)
    seen: list[str] = []
    pages = 0
    params: dict[str, Any] = {"flow": "greeting", "limit": 2}
    while True:
        status, body = await api.get("/api/v1/runs", params=params)
        assert status == 200, body
        pages += 1
        seen += [r["uuid"] for r in body["runs"]]
        if body["next"] is None:
            break
        params["cursor"] = body["next"]
    assert pages == 3 and len(seen) == len(set(seen)) == 5


async def test_flow_stats_over_http(api: Api) -> None:
    cids = [await new_contact(api, f"console:{i}") for i in range(3)]
    for cid in cids:
        await start(api, cid)
    await settle(api, "waiting", 3)
    await reply(api, cids[0], "hola")
    await settle(api, "completed", 1)
    status, body = await api.get("/api/v1/flows/greeting/stats")
    assert status == 200, body
    assert body["flow"] == "greeting"
    assert body["version"] == api.runtime.registry.flows["greeting"].version
    assert body["runs"] == {
        "started": 3,
        "active": 2,
        "waiting": 2,
        "completed": 1,
        "expired": 0,
        "interrupted": 0,
        "failed": 0,
    }
    nodes = {n["id"]: n for n in body["nodes"]}
    assert list(nodes) == ["hello", "ask", "bye"]
    assert nodes["ask"]["waiting"] == 2 and "waiting" not in nodes["hello"]
    assert nodes["ask"]["exits"] == [
        {"exit": "case0", "category": "Any", "to": "bye", "count": 1},
        {"exit": "other", "category": "Other", "to": None, "count": 0},
    ]
    assert {"exit": "next", "to": "ask", "count": 3} in nodes["hello"]["exits"]
    assert body["results"] == {"answer": {"Any": 1}}

    # deleting a contact takes its waiting run out of "now", not out of the totals
    async with api.client.delete(f"/api/v1/contacts/{cids[1]}", headers=AUTH) as resp:
        assert (resp.status, await resp.json()) == (200, {"deleted": cids[1]})
    status, body = await api.get("/api/v1/flows/greeting/stats")
    assert body["runs"]["active"] == 1 and body["runs"]["started"] == 3
    assert {n["id"]: n for n in body["nodes"]}["ask"]["waiting"] == 1
    assert {r["contact"] for r in await runs(api, status="waiting")} == {cids[2]}


async def test_bad_requests_get_a_coded_answer(api: Api) -> None:
    for params, code, http in [
        ({"status": "bogus"}, "bad_request", 400),
        ({"limit": "0"}, "bad_request", 400),
        ({"limit": "many"}, "bad_request", 400),
        ({"cursor": "not-a-cursor"}, "bad_request", 400),
        ({"cursor": "MTIzfGFiYw"}, "bad_request", 400),  # base64 of a malformed member
        ({"flow": "nope"}, "unknown_flow", 404),
    ]:
        status, body = await api.get("/api/v1/runs", params=params)
        assert_error(status, body, http, code)
    status, body = await api.get("/api/v1/flows/nope/stats")
    assert_error(status, body, 404, "unknown_flow")


async def test_a_flow_without_runs_has_empty_lists_and_zero_stats(api: Api) -> None:
    assert await runs(api) == []
    assert await runs(api, flow="greeting", status="failed") == []
    status, body = await api.get("/api/v1/flows/greeting/stats")
    assert status == 200
    assert body["runs"]["started"] == 0 and body["results"] == {}
    # every node of the flow is listed, each exit with a zero count (not an empty list)
    assert [n["id"] for n in body["nodes"]] == ["hello", "ask", "bye"]
    counts = [e["count"] for n in body["nodes"] for e in n["exits"]]
    assert counts and set(counts) == {0}
