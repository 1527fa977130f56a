"""Studio's Send flow and Starts pages over plain HTTP (docs/studio.md, "Send flow", "Starts"):
the preview counts and shows what a sample contact would read, sending makes the same start
the JSON API makes, a start's page names its failed contacts with their reason, retry and cancel
work and are refused to a read-only user; the chart is the start's outcome buckets."""

from __future__ import annotations

import re
import time

from bot.api.studio.chart import outcome_chart
from bot.api.studio.pages.starts import LATE_OUTCOMES
from bot.store.keys import start_key
from tests.support.api import GREETING, Api, MakeApi
from tests.support.studio import Studio

READER = "reader-token-0123456789"
FRAGMENT = {"X-Studio-Fragment": "1"}


async def _setup(make_api: MakeApi) -> tuple[Api, Studio, dict[str, str]]:
    api = await make_api(
        {"greeting": GREETING},
        drive=True,
        studio={"tokens": {"rosa": {"token": READER}}},
    )
    pages = Studio(api)
    assert await pages.sign_in() == 303
    people = {}
    for name, status in [("Ana Quispe", "active"), ("<script>alert(1)</script>", "active")]:
        urn = f"console:{len(people)}"
        body = {"urn": urn, "name": name, "groups": ["clientes"], "status": status}
        code, made = await api.post("/api/v1/contacts", body)
        assert code == 201, made
        people[name] = made["uuid"]
    code, made = await api.post(
        "/api/v1/contacts",
        {"urn": "console:out", "name": "Olga Baja", "groups": ["clientes"], "status": "opted_out"},
    )
    assert code == 201
    people["Olga Baja"] = made["uuid"]
    return api, pages, people


async def test_the_send_page_previews_then_sends_to_a_group(make_api: MakeApi) -> None:
    api, pages, people = await _setup(make_api)
    status, html = await pages.get("/studio/send")
    assert status == 200 and '<option value="greeting">' in html and "clientes" in html
    status, found = await pages.get("/studio/send/search?q=ana", headers=FRAGMENT)
    assert status == 200 and people["Ana Quispe"] in found and "Ana Quispe" in found
    status, found = await pages.get("/studio/send/search?q=script", headers=FRAGMENT)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in found and "<script>alert" not in found
    status, found = await pages.get("/studio/send/search?q=clien", headers=FRAGMENT)
    assert 'name="group"' in found  # groups are found by name too

    group = (await api.get("/api/v1/groups"))[1]["groups"][0]["uuid"]
    status, html = await pages.get(f"/studio/send?flow=greeting&group={group}")
    assert status == 200
    assert "Would start 2 of 3 contacts" in html
    assert re.search(r"Opted out</td><td class=\"num\">1<", html)
    assert "What " in html and "Hola " in html  # the opening message for a sample contact
    code, preview = await api.post(
        "/api/v1/starts/preview", {"flow": "greeting", "groups": [group]}
    )
    assert preview["counts"]["started"] == 2 and preview["counts"]["skipped"] == 1

    status, where, _ = await pages.post(
        "/studio/send", {"flow": "greeting", "group": group, "when": "now"}
    )
    assert status == 303 and where.startswith("/studio/starts/"), where
    sid = where.rsplit("/", 1)[1]
    await api.drain()
    code, start = await api.get(f"/api/v1/starts/{sid}")
    assert start["status"] == "completed" and start["counts"]["started"] == 2
    assert start["by"] == "admin" and start["groups"] == ["clientes"]
    status, html = await pages.get(where)
    assert status == 200 and "Started." in html and "completed" in html and "by admin" in html

    later = time.strftime("%Y-%m-%dT%H:%M", time.gmtime(time.time() + 7200))
    status, where, _ = await pages.post(
        "/studio/send",
        {"flow": "greeting", "contact": people["Ana Quispe"], "when": "at", "send_at": later},
    )
    assert status == 303
    code, scheduled = await api.get(f"/api/v1/starts/{where.rsplit('/', 1)[1]}")
    assert scheduled["status"] == "pending" and scheduled["send_at"] > time.time() + 3600
    status, where, _ = await pages.post(
        "/studio/send",
        {"flow": "greeting", "urns": "console:new-1", "when": "spread", "spread_over": "1h"},
    )
    assert status == 303
    code, spread = await api.get(f"/api/v1/starts/{where.rsplit('/', 1)[1]}")
    assert code == 200 and spread["spread_over"] == 3600

    status, _, html = await pages.post("/studio/send", {"flow": "greeting", "when": "now"})
    assert status == 400 and "Choose a group, a contact or a URN." in html
    status, _, html = await pages.post("/studio/send", {"flow": "nope", "group": group})
    assert status == 404 and "no flow" in html


async def test_a_start_page_names_the_failed_contacts_and_retries_them(
    make_api: MakeApi,
) -> None:
    api, pages, people = await _setup(make_api)
    code, start = await api.post("/api/v1/starts", {"flow": "greeting", "groups": ["clientes"]})
    sid = start["uuid"]
    await api.drain()
    ana = people["Ana Quispe"]
    (message,) = await api.store.messages(ana)
    error = {"code": 131049, "title": "ecosystem engagement", "message": "not delivered"}
    assert await api.store.apply_statuses(
        "console", [(message["uuid"], "failed", time.time(), error)]
    )

    status, html = await pages.get("/studio/starts")
    assert status == 200 and f"/studio/starts/{sid}" in html and "greeting" in html
    assert "by the API" in html
    status, table = await pages.get("/studio/starts/table", headers=FRAGMENT)
    assert status == 200 and "data-live-done" in table  # nothing runs: no more refreshing

    status, html = await pages.get(f"/studio/starts/{sid}")
    assert status == 200
    assert "Failures by error" in html and "<code>131049</code>" in html
    assert "Ana Quispe" in html and "not delivered" in html  # the failed contact, by name
    assert "<svg" in html and "series-failed" in html  # the outcomes over time
    assert "<script>alert" not in html
    # a provider's failure may still come: the counts stay live a while after the start ended
    status, live = await pages.get(f"/studio/starts/{sid}/live", headers=FRAGMENT)
    assert status == 200 and "data-live-done" not in live
    await api.store.redis.hset(start_key(sid), "completed_on", time.time() - LATE_OUTCOMES - 1)
    status, live = await pages.get(f"/studio/starts/{sid}/live", headers=FRAGMENT)
    assert status == 200 and "data-live-done" in live

    reader = Studio(api)
    reader.client = api.client  # the same cookie jar: sign in again as the reader
    assert await reader.sign_in(READER) == 303
    status, _, html = await reader.post(f"/studio/starts/{sid}/retry")
    assert status == 403 and "read-only" in html
    assert await pages.sign_in() == 303

    status, where, _ = await pages.post(f"/studio/starts/{sid}/retry")
    assert status == 303 and where != f"/studio/starts/{sid}"
    code, again = await api.get(f"/api/v1/starts/{where.rsplit('/', 1)[1]}")
    assert again["retry_of"] == sid and again["retry"]["contacts"] == 1
    assert again["by"] == "admin"

    code, later = await api.post(
        "/api/v1/starts",
        {"flow": "greeting", "contacts": [ana], "send_at": time.time() + 3600},
    )
    assert code == 202
    status, where, _ = await pages.post(f"/studio/starts/{later['uuid']}/cancel")
    assert status == 303
    assert (await api.get(f"/api/v1/starts/{later['uuid']}"))[1]["status"] == "cancelled"
    status, html = await pages.get(where)
    assert "Cancelled." in html
    status, html = await pages.get("/studio/starts/00000000-0000-0000-0000-000000000000")
    assert status == 404


def test_the_chart_draws_running_totals_in_utc() -> None:
    timeline = [
        (1_700_000_040, {"sent": 2, "delivered": 0, "read": 0, "failed": 1}),
        (1_700_000_100, {"sent": 1, "delivered": 3, "read": 1, "failed": 0}),
    ]
    svg = str(outcome_chart(timeline, lambda s, **_: s, now=1_700_000_400))
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "Sent: 3" in svg and "Delivered: 3" in svg and "Failed: 1" in svg
    assert ">3</text>" in svg  # the y axis tops at the biggest total
    assert "22:14" in svg and "22:20 UTC" in svg
    assert outcome_chart([], lambda s, **_: s) == ""
