"""Starts over real HTTP and a real Valkey: the app ``chasqui serve`` runs, whose background loops
are stopped after startup so that each test drains the ready, send and start streams itself,
deterministically (no sleeps): the same ``Worker`` and ``Starter`` code does the work."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from bot.core.clock import ManualClock
from bot.store.keys import READY, STARTS_DUE, contact_key, start_key
from bot.work.starts import StartSettings
from tests.support.api import AUTH, Api, MakeApi
from tests.support.waiting import wait_for

PROMO = """\
name: Promo
language: es
nodes:
  - id: hello
    send_message: {text: "Hola @trigger.params.offer"}
    next: ask
  - id: ask
    wait_for_reply:
      result: answer
      cases: [{has_text: true, category: Any, next: bye}]
  - id: bye
    send_message: {text: Chau}
"""

OTHER = """\
name: Other
language: es
nodes:
  - id: ask
    wait_for_reply:
      result: answer
      cases: [{has_text: true, category: Any, next: done}]
  - id: done
    send_message: {text: ok}
"""

FLOWS = {"promo": PROMO, "other": OTHER}


@pytest.fixture
async def api(make_api: MakeApi) -> Api:
    """The app on the promo and other flows; the test drives its worker and starter."""
    return await make_api(FLOWS, drive=True)


async def make_group(
    api: Api, name: str, n: int, *, opted_out: int = 0, no_route: int = 0
) -> list[str]:
    """``n`` members: the first ``opted_out`` opted out, the next ``no_route`` telegram-only."""
    records = []
    for i in range(n):
        urn = f"telegram:{900000 + i}" if opted_out <= i < opted_out + no_route else None
        urn = urn or f"console:{name}-{i}"
        record = {
            "uuid": str(uuid.uuid4()),
            "name": f"C{i}",
            "urns": [urn],
            "fields": {},
            "groups": [name],
            "status": "opted_out" if i < opted_out else "active",
            "created_on": 1000.0 + i,
        }
        records.append((urn, record))
    made = await api.store.create_contacts(records)
    gid, _ = await api.store.ensure_group(name, 1.0)
    cids = [c for c, _ in made]
    await api.store.add_memberships([(gid, c) for c in cids])
    return cids


async def runs_of(api: Api, cid: str) -> list[dict[str, Any]]:
    status, body = await api.get(f"/api/v1/contacts/{cid}/runs")
    assert status == 200
    runs: list[dict[str, Any]] = body["runs"]
    return runs


async def test_group_start_counts_match_preview_and_each_contact_runs_once(api: Api) -> None:
    cids = await make_group(api, "big", 1200, opted_out=30, no_route=20)
    waiting = cids[100:150]  # these wait in another flow
    for cid in waiting:
        await api.store.enqueue(cid, {"type": "start", "flow": "other", "at": time.time()})
    await api.drain()

    body = {"flow": "promo", "groups": ["big"], "exclude_active": True, "params": {"offer": "2x1"}}
    status, preview = await api.post("/api/v1/starts/preview", body)
    assert status == 200, preview
    assert preview["counts"]["targeted"] == 1200
    assert preview["counts"]["started"] == 1100
    assert preview["counts"]["skipped_by_reason"] == {
        "opted_out": 30,
        "blocked": 0,
        "no_route": 20,
        "already_started": 0,
        "in_other_flow": 50,
    }
    assert preview["template"] is None  # the flow opens with free text
    assert await api.store.redis.xlen(READY) == 0  # a preview starts nothing

    began = time.monotonic()
    status, start = await api.post("/api/v1/starts", body)
    assert status == 202 and start["status"] == "pending"
    assert time.monotonic() - began < 1.0
    await api.drain()
    status, done = await api.get(f"/api/v1/starts/{start['uuid']}")
    assert done["status"] == "completed"
    # the preview counted what the start did, under the same names
    shared = ("targeted", "started", "skipped", "skipped_by_reason", "failed")
    assert {k: done["counts"][k] for k in shared} == {k: preview["counts"][k] for k in shared}
    assert done["counts"]["skipped"] == 100 and done["counts"]["failed"] == 0
    assert done["messages"]["sent"] == 1100  # every "Hola" went out through the console
    for cid in cids[150:160] + cids[-5:]:
        runs = await runs_of(api, cid)
        assert [r["flow"] for r in runs] == ["promo"]
        assert runs[0]["start"] == start["uuid"]
        assert runs[0]["params"] == {"offer": "2x1"}
    assert [r["flow"] for r in await runs_of(api, waiting[0])] == ["other"]  # not interrupted
    assert [r["flow"] for r in await runs_of(api, cids[0])] == []  # opted out: never started

    # again, without restarting participants and without excluding the busy ones
    body = {"flow": "promo", "groups": ["big"], "restart_participants": False}
    status, preview = await api.post("/api/v1/starts/preview", body)
    assert preview["counts"]["started"] == 50
    assert preview["counts"]["skipped_by_reason"]["already_started"] == 1100
    status, second = await api.post("/api/v1/starts", body)
    await api.drain()
    status, done = await api.get(f"/api/v1/starts/{second['uuid']}")
    assert done["counts"]["started"] == 50
    assert done["counts"]["skipped_by_reason"] == preview["counts"]["skipped_by_reason"]
    runs = await runs_of(api, waiting[0])
    assert [(r["flow"], r["status"]) for r in runs] == [
        ("promo", "waiting"),
        ("other", "interrupted"),
    ]
    status, page = await api.get(f"/api/v1/starts/{second['uuid']}/contacts?status=started")
    assert sorted(c["contact"] for c in page["contacts"]) == sorted(waiting)
    status, page = await api.get(
        f"/api/v1/starts/{second['uuid']}/contacts?status=skipped&limit=5000"
    )
    reasons = {c["contact"]: c["reason"] for c in page["contacts"]}
    assert len(reasons) == 1150 and reasons[cids[0]] == "opted_out"
    assert reasons[cids[40]] == "no_route" and reasons[cids[500]] == "already_started"


async def test_a_replayed_chunk_starts_nobody_twice(api: Api) -> None:
    await make_group(api, "g", 300)
    api.starter.settings = StartSettings(chunk=100)
    status, start = await api.post("/api/v1/starts", {"flow": "promo", "groups": ["g"]})
    sid = start["uuid"]
    assert await api.starter.step(sid) == "more"
    before = await api.store.redis.hmget(start_key(sid), ["phase", "cursor", "targeted"])
    assert await api.starter.step(sid) == "more"
    # a crash after queueing the second chunk but before its cursor was saved: replay it
    await api.store.redis.hset(start_key(sid), mapping={"phase": before[0], "cursor": before[1]})
    assert await api.starter.step(sid) == "more"
    record = await api.store.redis.hgetall(start_key(sid))
    assert int(record[b"targeted"]) == int(record[b"started"]) < 300
    await api.drain_events()
    while await api.starter.step(sid) == "more":
        pass
    await api.drain()
    status, done = await api.get(f"/api/v1/starts/{sid}")
    assert status == 200 and done["status"] == "completed"
    assert done["counts"]["targeted"] == done["counts"]["started"] == 300
    _status, page = await api.get(f"/api/v1/starts/{sid}/contacts?limit=5000")
    assert len(page["contacts"]) == 300
    for item in page["contacts"][:60]:
        assert len(await runs_of(api, item["contact"])) == 1
        assert len(await api.store.messages(item["contact"])) == 1  # one "Hola"


async def test_replies_are_not_stuck_behind_an_expansion(api: Api) -> None:
    await make_group(api, "g", 400)
    [busy] = await make_group(api, "solo", 1)
    await api.store.enqueue(busy, {"type": "start", "flow": "promo", "at": time.time()})
    await api.drain_events()
    api.starter.settings = StartSettings(chunk=100, ready_threshold=50)
    status, start = await api.post("/api/v1/starts", {"flow": "promo", "groups": ["g"]})
    assert status == 202
    sid = start["uuid"]
    assert await api.starter.step(sid) == "more"  # 100 start events queued
    await api.store.enqueue(busy, {"type": "reply", "text": "yes", "at": time.time()})
    assert await api.starter.step(sid) == "throttled"  # the expander waits...
    await api.drain_events()  # ...while the reply is answered
    texts = [m.get("text") for m in await api.store.messages(busy)]
    assert texts[-1] == "Chau"
    assert int(await api.store.redis.hget(start_key(sid), "targeted")) < 400
    await api.drain()
    _status, done = await api.get(f"/api/v1/starts/{sid}")
    assert done["counts"]["started"] == 400


async def test_cancel_stops_what_was_not_queued(api: Api) -> None:
    await make_group(api, "g", 300)
    api.starter.settings = StartSettings(chunk=100)
    status, start = await api.post("/api/v1/starts", {"flow": "promo", "groups": ["g"]})
    sid = start["uuid"]
    [(eid, got)] = await api.starter.read("t", None)
    assert got == sid and await api.starter.handle(eid, sid) == "more"
    status, cancelled = await api.post(f"/api/v1/starts/{sid}/cancel")
    assert status == 200 and cancelled["status"] == "cancelled"
    await api.drain()
    status, done = await api.get(f"/api/v1/starts/{sid}")
    assert done["status"] == "cancelled"
    assert 0 < done["counts"]["started"] == done["counts"]["targeted"] < 300
    assert done["messages"]["sent"] == done["counts"]["started"]
    status, _again = await api.post(f"/api/v1/starts/{sid}/cancel")
    assert status == 200
    status, err = await api.post(f"/api/v1/starts/{uuid.uuid4()}/cancel")
    assert status == 404 and err["error"]["code"] == "unknown_start"


async def test_idempotency_key_urns_and_listing(api: Api) -> None:
    body = {"flow": "promo", "urns": ["console:new-1", "console:new-2"]}
    s1, first = await api.post("/api/v1/starts", body, headers={**AUTH, "Idempotency-Key": "abc"})
    s2, second = await api.post("/api/v1/starts", body, headers={**AUTH, "Idempotency-Key": "abc"})
    assert (s1, s2) == (202, 200) and first["uuid"] == second["uuid"]
    s3, other = await api.post("/api/v1/starts", {"flow": "other", "urns": ["console:new-1"]})
    assert s3 == 202
    await api.drain()
    status, found = await api.get("/api/v1/contacts?urn=console:new-2")
    assert status == 200
    [new_2] = found["contacts"]
    assert [r["flow"] for r in await runs_of(api, new_2["uuid"])] == ["promo"]
    status, listing = await api.get("/api/v1/starts")
    assert [s["uuid"] for s in listing["starts"]] == [other["uuid"], first["uuid"]]
    status, listing = await api.get("/api/v1/starts?flow=promo&status=completed")
    assert [s["uuid"] for s in listing["starts"]] == [first["uuid"]]
    # scheduled: stays pending until its time
    later = {"flow": "promo", "urns": ["console:new-1"], "send_at": time.time() + 3600}
    status, scheduled = await api.post("/api/v1/starts", later)
    await api.drain()
    status, still = await api.get(f"/api/v1/starts/{scheduled['uuid']}")
    assert still["status"] == "pending" and still["send_at"] == pytest.approx(later["send_at"])
    assert await api.store.redis.zscore(STARTS_DUE, scheduled["uuid"]) is not None


async def test_message_outcomes_and_retry_of_failed(api: Api) -> None:
    cids = await make_group(api, "g", 4)
    status, start = await api.post("/api/v1/starts", {"flow": "promo", "groups": ["g"]})
    sid = start["uuid"]
    await api.drain()
    mids = {cid: (await api.store.messages(cid))[0]["uuid"] for cid in cids}
    a, b, c, d = cids
    now = time.time()
    apply = api.store.apply_statuses
    assert await apply("console", [(mids[a], "delivered", now, None)]) == ["delivered"]
    assert await apply("console", [(mids[b], "read", now, None)]) == ["read"]
    error = {"code": 131049, "title": "ecosystem engagement"}
    for cid in (c, d):
        assert await apply("console", [(mids[cid], "failed", now, error)]) == ["failed"]
    assert await apply("console", [(mids[b], "delivered", now, None)]) == ["ignored"]
    await api.drain()
    status, done = await api.get(f"/api/v1/starts/{sid}")
    assert done["messages"] == {
        "sent": 4,
        "delivered": 2,
        "read": 1,
        "failed": 2,
        "failed_by_code": {"131049": 2},
    }
    # a contact whose opening message failed is failed, not started: the counts add up
    assert done["counts"]["failed"] == 2 and done["counts"]["started"] == 2
    # over time: a bucket a minute in the start's first day, an hour after it
    assert await apply("console", [(mids[a], "read", now + 2 * 86400, None)]) == ["read"]
    timeline = dict(await api.store.start_timeline(sid))
    late = int((now + 2 * 86400) // 3600 * 3600)
    assert timeline.pop(late) == {"sent": 0, "delivered": 0, "read": 1, "failed": 0}
    assert all(at % 60 == 0 and abs(at - now) < 120 for at in timeline)
    early = {
        k: sum(c[k] for c in timeline.values()) for k in ("sent", "delivered", "read", "failed")
    }
    assert early == {"sent": 4, "delivered": 2, "read": 1, "failed": 2}
    status, page = await api.get(f"/api/v1/starts/{sid}/contacts?status=failed")
    assert sorted(page["contacts"], key=lambda o: o["contact"] != c) == [
        {"contact": x, "status": "failed", "reason": "131049", "message": "ecosystem engagement"}
        for x in (c, d)
    ]
    # c is started again, and reached, by another start before the retry: only d is retried
    status, other = await api.post("/api/v1/starts", {"flow": "promo", "contacts": [c]})
    await api.drain()
    status, retry = await api.post(f"/api/v1/starts/{sid}/retry")
    assert status == 202 and retry["retry_of"] == sid
    assert retry["retry"] == {
        "contacts": 1,
        "skipped": 1,
        "skipped_by_reason": {"started_since": 1},
    }
    await api.drain()
    status, again = await api.get(f"/api/v1/starts/{retry['uuid']}")
    assert again["counts"]["targeted"] == again["counts"]["started"] == 1
    assert again["retry"] == retry["retry"]
    assert [r["start"] for r in await runs_of(api, d)] == [retry["uuid"], sid]
    assert [r["start"] for r in await runs_of(api, c)] == [other["uuid"], sid]
    status, err = await api.post(f"/api/v1/starts/{retry['uuid']}/retry")
    assert status == 409 and err["error"]["code"] == "nothing_to_retry"
    # once every failure was made good elsewhere, a retry has nothing to do, and says why
    status, err = await api.post(f"/api/v1/starts/{sid}/retry")
    assert status == 409 and err["error"]["code"] == "nothing_to_retry"
    assert err["error"]["details"] == {"skipped_by_reason": {"started_since": 2}}


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"flow": "nope", "groups": ["g"]}, 404, "unknown_flow"),
        ({"flow": "promo", "groups": ["missing"]}, 404, "unknown_group"),
        ({"flow": "promo", "urns": ["whatsapp:+1"]}, 400, "invalid_urn"),
        ({"flow": "promo", "contacts": [str(uuid.UUID(int=7))]}, 404, "unknown_contact"),
        ({"flow": "promo"}, 400, "invalid_body"),
        ({"groups": ["g"]}, 400, "invalid_body"),
        ({"flow": 7, "groups": ["g"]}, 400, "invalid_body"),
        ({"flow": "promo", "groups": "g"}, 400, "invalid_body"),
        ({"flow": "promo", "groups": ["g"], "params": []}, 400, "invalid_body"),
        ({"flow": "promo", "groups": ["g"], "send_at": "tomorrow"}, 400, "invalid_body"),
        ({"flow": "promo", "groups": ["g"], "spread_over": "soon"}, 400, "invalid_body"),
        ({"flow": "promo", "groups": ["g"], "exclude_active": "yes"}, 400, "invalid_body"),
        ({"flow": "promo", "groups": ["g"], "colour": "red"}, 400, "invalid_body"),
        ("{not json", 400, "invalid_body"),
    ],
)
async def test_bad_input_is_a_4xx_with_a_code(api: Api, body: Any, status: int, code: str) -> None:
    await make_group(api, "g", 1)
    for path in ("/api/v1/starts", "/api/v1/starts/preview"):
        got, err = await api.post(path, body)
        assert (got, err["error"]["code"]) == (status, code)
    assert await api.store.redis.zcard("chasqui:starts") == 0


async def test_other_errors(api: Api) -> None:
    async with api.client.post("/api/v1/starts", json={"flow": "promo"}) as resp:
        assert resp.status == 401
    status, err = await api.get(f"/api/v1/starts/{uuid.uuid4()}")
    assert (status, err["error"]["code"]) == (404, "unknown_start")
    status, err = await api.get("/api/v1/starts?status=running")
    assert status == 400
    status, err = await api.post(f"/api/v1/starts/{uuid.uuid4()}/retry")
    assert status == 404


async def test_opening_template_and_spread(api: Api, tmp_path: Path) -> None:
    (tmp_path / "flows" / "tpl.yaml").write_text(
        "name: Tpl\nlanguage: pt\nnodes:\n"
        "  - id: intro\n    send_message: {template: {name: oferta}}\n",
        encoding="utf-8",
    )
    api.runtime.load_flows()
    await make_group(api, "g", 10)
    status, preview = await api.post("/api/v1/starts/preview", {"flow": "tpl", "groups": ["g"]})
    assert status == 200
    assert preview["template"] == {"name": "oferta", "language": "pt", "node": "intro"}
    _status, start = await api.post(
        "/api/v1/starts", {"flow": "promo", "groups": ["g"], "spread_over": "10s"}
    )
    await api.drain()  # the first chunk only: the next one is due a second later
    record = await api.store.redis.hgetall(start_key(start["uuid"]))
    assert int(record[b"chunk"]) == 1 and float(record[b"interval"]) == pytest.approx(1.0)
    assert int(record[b"targeted"]) == 1
    assert await api.store.redis.zscore(STARTS_DUE, start["uuid"]) is not None
    assert await api.store.redis.llen(contact_key("x", "q")) == 0


async def test_spread_over_paces_chunks_on_the_clock_without_drift(make_api: MakeApi) -> None:
    """30 contacts over 10 s: 3 a chunk, a chunk a second from the moment it began -- none
    early; and a late wake-up catches up instead of pushing the end later."""
    clock = ManualClock()
    api = await make_api(FLOWS, clock=clock, drive=True)
    await make_group(api, "g", 30)
    _status, start = await api.post(
        "/api/v1/starts", {"flow": "promo", "groups": ["g"], "spread_over": "10s"}
    )
    sid = start["uuid"]

    async def started() -> int:
        return int(await api.store.redis.hget(start_key(sid), "started") or 0)

    began = clock.now()
    await api.drain()
    assert await started() == 3
    for second in range(1, 4):
        clock.advance(0.99)  # just before the next chunk is due: nothing more
        await api.drain()
        assert await started() == 3 * second
        clock.advance(0.01)
        await api.drain()
        assert await started() == 3 * (second + 1)
    clock.advance(3.5)  # woken late (t = 6.5 s): the chunks due at 4, 5 and 6 s go now
    await api.drain()
    assert await started() == 21
    clock.advance(began + 9 - clock.now())  # the last chunk is due at 9 s: the end holds
    await api.drain()
    assert await started() == 30
    status, body = await api.get(f"/api/v1/starts/{sid}")
    assert status == 200 and body["status"] == "completed"
    assert body["counts"]["started"] == 30


async def test_the_serve_loop_expands_a_start(make_api: MakeApi) -> None:
    """Without the test driving: the worker's own start loop takes the start to completed."""
    api = await make_api(FLOWS)
    await make_group(api, "g", 50)
    status, start = await api.post("/api/v1/starts", {"flow": "promo", "groups": ["g"]})
    assert status == 202

    async def completed() -> dict[str, Any]:
        _, done = await api.get(f"/api/v1/starts/{start['uuid']}")
        return done if done["status"] == "completed" and done["messages"]["sent"] == 50 else {}

    done = await wait_for(completed, timeout=10, what="the start to complete")
    assert done["counts"]["started"] == 50 and done["messages"]["sent"] == 50
