"""The admin API over real HTTP on loopback, with the runtime's worker running inside the app.

The app is the one ``chasqui serve`` runs (``create_app``), on the session's Valkey, with flows
from a temporary folder. Every error is JSON with a stable code; nothing answers a bare 500.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from tests.support.api import (
    AUTH,
    GREETING,
    MAX_BODY,
    TOKEN,
    Api,
    MakeApi,
    assert_error,
    new_contact,
)
from tests.support.waiting import wait_for


async def test_healthz_needs_no_token_and_checks_redis(api: Api) -> None:
    async with api.client.get("/healthz") as resp:
        assert resp.status == 200
        assert await resp.json() == {
            "status": "ok",
            "flows": 1,
            "redis": "ok",
            "channels": {"console": {"status": "ok"}},
        }


ROUTES = [
    ("GET", "/api/v1/flows"),
    ("POST", "/api/v1/flows/reload"),
    ("GET", "/api/v1/contacts?urn=console:x"),
    ("GET", "/api/v1/contacts/0b5f2c2e-8a4b-4e0e-9a43-2d9f6c1a7f10"),
    ("GET", "/api/v1/contacts/0b5f2c2e-8a4b-4e0e-9a43-2d9f6c1a7f10/runs"),
    ("GET", "/api/v1/contacts/0b5f2c2e-8a4b-4e0e-9a43-2d9f6c1a7f10/messages"),
    ("POST", "/api/v1/contacts/0b5f2c2e-8a4b-4e0e-9a43-2d9f6c1a7f10/start"),
    ("GET", "/api/v1/runs"),
    ("GET", "/api/v1/flows/greeting/stats"),
    ("GET", "/api/v1/no-such-route"),
]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": TOKEN},  # the token without the Bearer scheme
        {"Authorization": "Bearer "},
        {"Authorization": f"Basic {TOKEN}"},
    ],
    ids=["none", "wrong", "no-scheme", "empty", "basic"],
)
async def test_every_api_route_needs_the_token(api: Api, headers: dict[str, str]) -> None:
    for method, path in ROUTES:
        async with api.client.request(method, path, headers=headers, json={"flow": "x"}) as resp:
            body = await resp.json()
            assert_error(resp.status, body, 401, "unauthorized")
    assert (await api.runtime.redis.xlen("chasqui:ready")) == 0  # type: ignore[union-attr]


async def test_list_flows(api: Api) -> None:
    status, body = await api.get("/api/v1/flows")
    assert status == 200
    [flow] = body["flows"]
    assert flow == {
        "id": "greeting",
        "name": "Greeting",
        "language": "es",
        "version": api.runtime.registry.flows["greeting"].version,
        "nodes": 3,
        "expire_after": 7 * 86400,
    }


async def test_reload_keeps_a_flow_whose_file_became_invalid(api: Api) -> None:
    before = api.runtime.registry.flows["greeting"]
    path = api.flows / "greeting.yaml"
    path.write_text(GREETING.replace("next: bye", "next: byee"), encoding="utf-8")
    status, body = await api.post("/api/v1/flows/reload")
    assert status == 200
    assert body == {
        "loaded": [],
        "unchanged": [],
        "kept": ["greeting"],
        "removed": [],
        "problems": [
            f"{path}:10: nodes[1] (ask): wait_for_reply.cases[0].next: unknown node 'byee'"
        ],
        "template_problems": [],
    }
    assert api.runtime.registry.flows["greeting"] is before

    path.write_text(GREETING.replace("Chau", "Adiós"), encoding="utf-8")
    (api.flows / "second.yaml").write_text(GREETING, encoding="utf-8")
    status, body = await api.post("/api/v1/flows/reload")
    assert (status, body["loaded"], body["kept"], body["problems"]) == (
        200,
        ["greeting", "second"],
        [],
        [],
    )
    status, body = await api.get("/api/v1/flows")
    assert sorted(f["id"] for f in body["flows"]) == ["greeting", "second"]
    assert api.runtime.registry.flows["greeting"].version != before.version


async def test_start_with_an_unknown_flow(api: Api) -> None:
    cid = await new_contact(api)
    status, body = await api.post(f"/api/v1/contacts/{cid}/start", json={"flow": "nope"})
    assert_error(status, body, 404, "unknown_flow")
    assert body["error"]["details"] == {"flows": ["greeting"]}
    status, body = await api.post(f"/api/v1/contacts/{cid}/start", json={})
    assert_error(status, body, 400, "invalid_body")
    assert body["error"]["message"] == "flow: Field required"
    assert body["error"]["details"]["errors"] == [{"field": "flow", "message": "Field required"}]


@pytest.mark.parametrize(
    "data",
    [b"{not json", b"", b'["a", "list"]', b'"text"', b"\xff\xfe"],
    ids=["broken", "empty", "list", "string", "not-utf8"],
)
async def test_start_with_a_body_that_is_not_a_json_object(api: Api, data: bytes) -> None:
    cid = await new_contact(api)
    headers = {**AUTH, "Content-Type": "application/json"}
    status, body = await api.post(f"/api/v1/contacts/{cid}/start", data=data, headers=headers)
    assert_error(status, body, 400, "invalid_body")


async def test_start_with_params_that_are_not_an_object(api: Api) -> None:
    cid = await new_contact(api)
    payload = {"flow": "greeting", "params": ["x"]}
    status, body = await api.post(f"/api/v1/contacts/{cid}/start", json=payload)
    assert_error(status, body, 400, "invalid_body")
    assert body["error"]["details"]["errors"][0]["field"] == "params"


async def test_start_with_an_oversize_body(api: Api) -> None:
    cid = await new_contact(api)
    payload = {"flow": "greeting", "params": {"x": "y" * MAX_BODY}}
    status, body = await api.post(f"/api/v1/contacts/{cid}/start", json=payload)
    assert_error(status, body, 413, "body_too_large")


async def test_unknown_contact(api: Api) -> None:
    missing = "0b5f2c2e-8a4b-4e0e-9a43-2d9f6c1a7f10"
    for path in ("", "/runs", "/messages"):
        status, body = await api.get(f"/api/v1/contacts/{missing}{path}")
        assert_error(status, body, 404, "unknown_contact")
    status, body = await api.post(f"/api/v1/contacts/{missing}/start", json={"flow": "greeting"})
    assert_error(status, body, 404, "unknown_contact")
    status, body = await api.get("/api/v1/contacts", params={"urn": "console:nobody"})
    assert (status, body) == (200, {"contacts": [], "next": None})  # the list shape, empty
    status, body = await api.get("/api/v1/contacts", params={"cursor": "not-a-cursor"})
    assert_error(status, body, 400, "bad_request")


async def test_unknown_routes_and_methods(api: Api) -> None:
    status, body = await api.get("/api/v1/nothing-here")
    assert_error(status, body, 404, "not_found")
    async with api.client.get("/favicon.ico") as resp:
        assert_error(resp.status, await resp.json(), 404, "not_found")
    status, body = await api.get("/api/v1/flows/reload")
    assert_error(status, body, 405, "method_not_allowed")


async def test_start_a_contact_end_to_end(api: Api) -> None:
    cid = await new_contact(api, "console:x", "Ana Souza")
    status, body = await api.post(
        f"/api/v1/contacts/{cid}/start", json={"flow": "greeting", "params": {"order": "A-1"}}
    )
    assert status == 202
    assert (body["flow"], body["params"], body["status"]) == (
        "greeting",
        {"order": "A-1"},
        "completed",
    )
    status, listed = await api.get("/api/v1/starts")
    assert [s["uuid"] for s in listed["starts"]] == [body["uuid"]]  # in the starts history

    async def sent_messages() -> list[dict[str, Any]]:
        status, body = await api.get(f"/api/v1/contacts/{cid}/messages")
        assert status == 200
        return [m for m in body["messages"] if m["status"] == "sent"]

    [message] = await wait_for(sent_messages, what="the greeting to be sent")
    assert message["text"] == "Hola Ana"
    assert message["direction"] == "out"
    assert message["contact"] == cid

    status, body = await api.get(f"/api/v1/contacts/{cid}/runs")
    assert status == 200
    [run] = body["runs"]
    assert (run["flow"], run["status"], run["params"]) == ("greeting", "waiting", {"order": "A-1"})
    assert [node for node, _at in run["path"]] == ["hello", "ask"]

    status, body = await api.get("/api/v1/contacts", params={"urn": "console:x"})
    assert status == 200
    [found] = body["contacts"]
    assert (found["uuid"], found["name"], found["urns"]) == (cid, "Ana Souza", ["console:x"])
    status, body = await api.get(f"/api/v1/contacts/{cid}")
    assert (status, body["uuid"]) == (200, cid)


@pytest.fixture
async def broken_api(make_api: MakeApi) -> Api:
    """An app with one extra route that fails the way a handler bug would."""

    async def buggy(request: web.Request) -> web.Response:
        raise KeyError("secret-internal-detail")

    return await make_api(app_hook=lambda app: app.router.add_get("/api/v1/buggy", buggy))


async def test_a_handler_bug_is_a_json_500_without_a_stack_trace(
    broken_api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    status, body = await broken_api.get("/api/v1/buggy")
    assert_error(status, body, 500, "internal")
    assert "secret-internal-detail" not in str(body)
    assert "KeyError" not in str(body)
    reference = body["error"]["message"].removeprefix("internal error (reference ").rstrip(")")
    assert len(reference) == 12
    # the stack trace is in the log, findable by the reference
    [record] = [r for r in caplog.records if r.name == "chasqui.server"]
    assert reference in record.getMessage()
    assert record.exc_info is not None


async def test_contact_history_is_one_timeline(api: Api) -> None:
    cid = await new_contact(api, "console:h", "Ana Souza")
    assert (await api.post(f"/api/v1/contacts/{cid}/start", json={"flow": "greeting"}))[0] == 202

    async def waiting() -> list[dict[str, Any]]:
        return [
            r
            for r in (await api.get(f"/api/v1/contacts/{cid}/runs"))[1]["runs"]
            if r["status"] == "waiting"
        ]

    await wait_for(waiting, what="the first run to wait")
    # a second start interrupts the first run
    assert (await api.post(f"/api/v1/contacts/{cid}/start", json={"flow": "greeting"}))[0] == 202

    async def two_runs() -> list[dict[str, Any]]:
        runs = (await api.get(f"/api/v1/contacts/{cid}/runs"))[1]["runs"]
        return runs if len(runs) == 2 and runs[0]["status"] == "waiting" else []

    await wait_for(two_runs, what="the second run to wait")
    status, body = await api.get(f"/api/v1/contacts/{cid}/history")
    assert status == 200 and body["contact"] == cid
    kinds = [item["type"] for item in body["history"]]
    assert kinds == ["run_started", "message_out", "run_interrupted", "run_started", "message_out"]
    interrupted = body["history"][2]
    assert interrupted["reason"] == "started in greeting" and interrupted["flow"] == "greeting"
    assert body["history"][1]["message"]["text"] == "Hola Ana"
    times = [item["at"] for item in body["history"]]
    assert times == sorted(times)
    status, body = await api.get("/api/v1/contacts/00000000-0000-4000-8000-000000000000/history")
    assert_error(status, body, 404, "unknown_contact")
