"""One API shape: the consistency rules of docs/api.md, each met where a new user met it broken.

Every resource has a uuid its routes take; every list pages with ``limit`` and ``cursor`` and
answers ``next``; a contact is written and read with the same fields; a body that does not fit is
``invalid_body`` naming the field; what a start names and is not there is a 404 of one kind.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.support.api import Api, assert_error
from tests.support.waiting import wait_for

MISSING = str(uuid.UUID(int=7))


async def _pages(api: Api, path: str, key: str, limit: int) -> list[list[dict[str, Any]]]:
    """Every page of a list, following ``next`` until it is null."""
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        params = {"limit": str(limit), **({"cursor": cursor} if cursor else {})}
        status, body = await api.get(path, params=params)
        assert status == 200, body
        assert set(body) == {key, "next"}
        pages.append(body[key])
        cursor = body["next"]
        if cursor is None:
            return pages


async def test_a_group_is_named_by_its_uuid_in_routes_and_bodies(api: Api) -> None:
    status, group = await api.post("/api/v1/groups", {"name": "Clientes"})
    assert status == 201 and uuid.UUID(group["uuid"])
    gid = group["uuid"]
    status, contact = await api.post(
        "/api/v1/contacts", {"urn": "console:ana", "name": "Ana", "groups": [gid]}
    )
    assert status == 201 and contact["groups"] == ["Clientes"]  # read back by name
    status, body = await api.get(f"/api/v1/groups/{gid}")
    assert (status, body["name"], body["count"]) == (200, "Clientes", 1)
    status, body = await api.get("/api/v1/contacts", params={"group": gid})
    assert [c["uuid"] for c in body["contacts"]] == [contact["uuid"]]
    status, renamed = await api.request("PATCH", f"/api/v1/groups/{gid}", {"name": "VIP"})
    assert (status, renamed["uuid"], renamed["name"]) == (200, gid, "VIP")
    status, body = await api.post(f"/api/v1/groups/{gid}/members", {"urns": ["console:bea"]})
    assert (status, body["group"], body["added"]) == (200, gid, 1)
    # a start names it by uuid or by name, the same group
    for ref in (gid, "VIP"):
        status, preview = await api.post(
            "/api/v1/starts/preview", {"flow": "greeting", "groups": [ref]}
        )
        assert (status, preview["counts"]["targeted"]) == (200, 2)
    status, body = await api.request("DELETE", f"/api/v1/groups/{gid}")
    assert (status, body) == (200, {"deleted": gid})
    status, body = await api.get(f"/api/v1/groups/{gid}")
    assert_error(status, body, 404, "unknown_group")


async def test_every_list_pages_with_limit_cursor_and_next(api: Api) -> None:
    for n in range(5):
        await api.post("/api/v1/groups", {"name": f"G{n}"})
        await api.post("/api/v1/contacts", {"urn": f"console:p{n}"})
        # the clock stands still in tests: five starts at one instant, paged without a gap
        status, _ = await api.post("/api/v1/starts", {"flow": "greeting", "groups": [f"G{n}"]})
        assert status == 202
    for path, key in (
        ("/api/v1/groups", "groups"),
        ("/api/v1/contacts", "contacts"),
        ("/api/v1/starts", "starts"),
        ("/api/v1/templates", "templates"),
        ("/api/v1/runs", "runs"),
    ):
        whole = await _pages(api, path, key, 500)
        paged = await _pages(api, path, key, 2)
        assert [i for page in paged for i in page] == whole[0], path
        if whole[0]:
            assert [len(p) for p in paged[:2]] == [2, 2], path
    assert len((await _pages(api, "/api/v1/starts", "starts", 500))[0]) == 5
    status, body = await api.get("/api/v1/starts", params={"cursor": "bm90LWEtY3Vyc29y"})
    assert_error(status, body, 400, "bad_request")


async def test_a_contact_is_written_and_read_with_the_same_fields(api: Api) -> None:
    sent = {"urns": ["console:ana"], "name": "Ana", "language": "es", "fields": {"city": "Lima"}}
    status, made = await api.post("/api/v1/contacts", sent)
    assert status == 201
    status, read = await api.get(f"/api/v1/contacts/{made['uuid']}")
    assert {k: read[k] for k in sent} == sent  # what was written is read under the same names
    status, found = await api.get("/api/v1/contacts", params={"urn": "console:ana"})
    assert found == {"contacts": [read], "next": None}  # the list shape, like other filters
    status, short = await api.post("/api/v1/contacts", {"urn": "console:bea"})  # the shorthand
    assert (status, short["urns"]) == (201, ["console:bea"])


async def test_a_contact_whose_urn_exists_is_409_urn_in_use(api: Api) -> None:
    status, first = await api.post("/api/v1/contacts", {"urn": "console:ana", "name": "Ana"})
    assert status == 201
    status, body = await api.post("/api/v1/contacts", {"urn": "console:ana", "name": "Other"})
    assert_error(status, body, 409, "urn_in_use")
    assert body["error"]["details"]["contact"] == first["uuid"]
    status, read = await api.get(f"/api/v1/contacts/{first['uuid']}")
    assert read["name"] == "Ana"


@pytest.mark.parametrize(
    ("path", "sent", "field"),
    [
        ("/api/v1/starts", {"groups": ["g"]}, "flow"),
        ("/api/v1/starts/preview", {"groups": ["g"]}, "flow"),
        ("/api/v1/starts", {"flow": "greeting", "groups": ["g"], "params": []}, "params"),
        ("/api/v1/contacts", {"urn": "console:a", "name": 0}, "name"),
        ("/api/v1/contacts", {"urn": "console:a", "fields": []}, "fields"),
        ("/api/v1/groups", {}, "name"),
        ("/api/v1/groups", {"name": 0}, "name"),
        ("/api/v1/contacts/{cid}/start", {"params": {}}, "flow"),
    ],
)
async def test_a_body_that_does_not_fit_is_invalid_body_naming_the_field(
    api: Api, path: str, sent: dict[str, Any], field: str
) -> None:
    status, contact = await api.post("/api/v1/contacts", {"urn": "console:z"})
    status, body = await api.post(path.format(cid=contact["uuid"]), sent)
    assert_error(status, body, 400, "invalid_body")
    assert body["error"]["message"].startswith(f"{field}: ")
    assert body["error"]["details"]["errors"][0]["field"] == field


async def test_what_a_start_names_and_is_not_there_is_a_404_of_its_kind(api: Api) -> None:
    cases = [
        ({"flow": "greeting", "groups": ["nobody"]}, "unknown_group"),
        ({"flow": "greeting", "groups": [MISSING]}, "unknown_group"),
        ({"flow": "greeting", "contacts": [MISSING]}, "unknown_contact"),
        ({"flow": "nope", "urns": ["console:a"]}, "unknown_flow"),
    ]
    for sent, code in cases:
        for path in ("/api/v1/starts", "/api/v1/starts/preview"):
            status, body = await api.post(path, sent)
            assert_error(status, body, 404, code)
    assert (await api.get("/api/v1/starts"))[1]["starts"] == []


async def test_a_preview_counts_under_the_names_of_the_start(api: Api) -> None:
    await api.post("/api/v1/contacts", {"urn": "console:a", "groups": ["G"]})
    await api.post("/api/v1/contacts", {"urn": "console:b", "groups": ["G"], "status": "blocked"})
    sent = {"flow": "greeting", "groups": ["G"]}
    status, preview = await api.post("/api/v1/starts/preview", sent)
    assert status == 200
    status, start = await api.post("/api/v1/starts", sent)
    assert status == 202

    async def done() -> dict[str, Any] | None:
        _, body = await api.get(f"/api/v1/starts/{start['uuid']}")
        return body if body["status"] == "completed" else None

    finished = await wait_for(done, what="the start")
    assert set(preview["counts"]) >= set(finished["counts"])
    for name in finished["counts"]:
        assert preview["counts"][name] == finished["counts"][name], name
    assert (finished["counts"]["started"], finished["counts"]["skipped"]) == (1, 1)


async def test_starting_one_contact_is_a_start_in_the_history(api: Api) -> None:
    status, contact = await api.post("/api/v1/contacts", {"urn": "console:a", "name": "Ana"})
    status, start = await api.post(
        f"/api/v1/contacts/{contact['uuid']}/start", {"flow": "greeting"}
    )
    assert status == 202 and uuid.UUID(start["uuid"])
    assert (start["flow"], start["counts"]["targeted"], start["counts"]["started"]) == (
        "greeting",
        1,
        1,
    )
    status, listed = await api.get("/api/v1/starts")
    assert [s["uuid"] for s in listed["starts"]] == [start["uuid"]]
    status, again = await api.get(f"/api/v1/starts/{start['uuid']}")
    assert again["uuid"] == start["uuid"]
