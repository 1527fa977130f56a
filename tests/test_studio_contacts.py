"""Studio's Contacts pages over plain HTTP (the browser tests are in tests/browser/): the list
with its search fragment, filters and paging, create, edit, groups, opt-out, delete, the CSV
import and export, and a contact's timeline -- each through the services the JSON API calls."""

from __future__ import annotations

import csv
import io
import re
from typing import Any

import aiohttp

from tests.support.api import GREETING, Api, MakeApi
from tests.support.studio import Studio
from tests.support.waiting import wait_for

READER = "reader-token-0123456789"


async def signed_in(make_api: MakeApi) -> Studio:
    pages = Studio(
        await make_api({"greeting": GREETING}, studio={"tokens": {"rosa": {"token": READER}}})
    )
    assert await pages.sign_in() == 303
    return pages


async def create(api: Api, urn: str, **extra: Any) -> str:
    status, body = await api.post("/api/v1/contacts", {"urn": urn, **extra})
    assert status == 201, body
    return str(body["uuid"])


def names(html: str) -> list[str]:
    return re.findall(r'<a href="/studio/contacts/[0-9a-f-]{36}">([^<]*)</a>', html)


async def test_list_search_filters_and_paging(make_api: MakeApi) -> None:
    pages = await signed_in(make_api)
    api = pages.api
    await create(api, "console:a", name="Ana Lima", groups=["VIP"])
    await create(api, "console:b", name="Anabel Ruiz", status="opted_out")
    await create(api, "console:c", name="Bruno Díaz", fields={"city": "Arequipa"})
    status, html = await pages.get("/studio/contacts")
    # creation order; two made in the same millisecond are in uuid order
    assert status == 200 and sorted(names(html)) == ["Ana Lima", "Anabel Ruiz", "Bruno Díaz"]
    assert 'data-search="/studio/contacts/rows?' in html
    # the search fragment: no layout, as the page's script asks for it
    status, html = await pages.get(
        "/studio/contacts/rows?q=ana", headers={"X-Studio-Fragment": "1"}
    )
    assert status == 200 and "<html" not in html
    assert names(html) == ["Ana Lima", "Anabel Ruiz"]
    _, html = await pages.get("/studio/contacts?q=areq")  # a field's value
    assert names(html) == ["Bruno Díaz"]
    _, html = await pages.get("/studio/contacts?q=ana&status=opted_out")
    assert names(html) == ["Anabel Ruiz"]
    _, html = await pages.get("/studio/contacts?group=VIP")
    assert names(html) == ["Ana Lima"]
    for n in range(55):
        await create(api, f"console:p{n}", name=f"Paz {n:02d}")
    _, html = await pages.get("/studio/contacts?q=paz")
    assert len(names(html)) == 50
    more = re.search(r'href="/studio/contacts\?([^"]*cursor=[^"]*)"', html)
    assert more, html
    _, html = await pages.get("/studio/contacts?" + more.group(1).replace("&amp;", "&"))
    assert len(names(html)) == 5 and "First page" in html
    status, html = await pages.get("/studio/contacts?group=Nope")
    assert status == 404 and "no group" in html
    _, html = await pages.get("/studio/contacts?q=ana", headers={"Accept-Language": "es-PE"})
    assert "Exportar CSV" in html and ">dado de baja<" in html and ">activo<" in html


async def test_create_edit_groups_opt_out_and_delete(make_api: MakeApi) -> None:
    pages = await signed_in(make_api)
    status, where, _ = await pages.post(
        "/studio/contacts", {"urn": "whatsapp:+51 987 654 321", "name": "Eva", "group": "Nuevos"}
    )
    assert status == 303 and where.startswith("/studio/contacts/"), where
    cid = where.rsplit("/", 1)[1]
    status, html = await pages.get(where)
    assert status == 200 and "whatsapp:+51987654321" in html and "Contact created." in html
    assert "Nuevos" in html

    status, where, _ = await pages.post(
        f"/studio/contacts/{cid}/edit",
        {"name": "Eva Paz", "language": "es", "new_key": "city", "new_value": "Cusco"},
    )
    assert status == 303
    _, contact = await pages.api.get(f"/api/v1/contacts/{cid}")
    assert (contact["name"], contact["language"], contact["fields"]) == (
        "Eva Paz",
        "es",
        {"city": "Cusco"},
    )
    await pages.post(f"/studio/contacts/{cid}/edit", {"name": "Eva Paz", "field:city": ""})
    _, contact = await pages.api.get(f"/api/v1/contacts/{cid}")
    assert contact["fields"] == {} and contact.get("language") in (None, "")

    await pages.post(f"/studio/contacts/{cid}/groups", {"add": "VIP"})
    await pages.post(f"/studio/contacts/{cid}/groups", {"remove": "Nuevos"})
    _, contact = await pages.api.get(f"/api/v1/contacts/{cid}")
    assert contact["groups"] == ["VIP"]
    _, group = await pages.api.get("/api/v1/groups/VIP")
    assert group["count"] == 1

    await pages.post(f"/studio/contacts/{cid}/status", {"status": "opted_out"})
    _, contact = await pages.api.get(f"/api/v1/contacts/{cid}")
    assert contact["status"] == "opted_out"
    _, html = await pages.get(f"/studio/contacts/{cid}")
    assert "Opt in again" in html

    # a refused change goes back with the API's reason, never a 500
    status, where, _ = await pages.post(
        f"/studio/contacts/{cid}/edit",
        {"name": "bad\x00name"},
        headers={
            "Referer": f"http://{pages.client.host}:{pages.client.port}/studio/contacts/{cid}"
        },
    )
    assert status == 303 and where == f"/studio/contacts/{cid}"
    _, html = await pages.get(where)
    assert "control characters" in html

    status, where, _ = await pages.post(f"/studio/contacts/{cid}/delete")
    assert (status, where) == (303, "/studio/contacts")
    status, _ = await pages.api.get(f"/api/v1/contacts/{cid}")
    assert status == 404
    status, html = await pages.get(f"/studio/contacts/{cid}")
    assert status == 404


async def test_read_only_users_see_but_do_not_change(make_api: MakeApi) -> None:
    pages = await signed_in(make_api)
    cid = await create(pages.api, "console:r", name="Rita")
    reader = Studio(pages.api)
    pages.client.session.cookie_jar.clear()
    assert await reader.sign_in(READER) == 303
    _, html = await reader.get(f"/studio/contacts/{cid}")
    assert "Delete contact" not in html and "readonly" in html
    status, _, html = await reader.post(f"/studio/contacts/{cid}/delete")
    assert status == 403
    status, _ = await pages.api.get(f"/api/v1/contacts/{cid}")
    assert status == 200


async def test_import_reports_each_row_and_export_streams_the_list(make_api: MakeApi) -> None:
    pages = await signed_in(make_api)
    rows = ["urn,name,field:city"]
    rows += [f"whatsapp:+5511987650{n:03d},Cliente {n},Lima" for n in range(600)]
    rows += ["whatsapp:123,Mala,Lima", "whatsapp:+5511987650001,Repetida,Lima"]
    form = aiohttp.FormData()
    form.add_field("group", "Importados")
    form.add_field("file", "\n".join(rows) + "\n", filename="clientes.csv", content_type="text/csv")
    async with pages.client.post(f"/studio/contacts/import?csrf={pages.csrf}", data=form) as resp:
        html = await resp.text()
        assert resp.status == 200, html
    assert "602 rows: 600 created, 0 updated, 2 failed." in html
    assert "invalid_urn" in html and "duplicate_urn" in html and ">603<" in html
    _, group = await pages.api.get("/api/v1/groups/Importados")
    assert group["count"] == 600
    async with pages.client.get("/studio/contacts/export.csv?group=Importados") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/csv")
        assert "attachment" in resp.headers["Content-Disposition"]
        exported = list(csv.reader(io.StringIO(await resp.text())))
    assert exported[0] == ["uuid", "urn", "name", "language", "status", "groups", "field:city"]
    assert len(exported) == 601
    assert {r[6] for r in exported[1:]} == {"Lima"} and exported[1][5] == "Importados"
    # without a file: the form again with the reason, not a 500
    async with pages.client.post(
        f"/studio/contacts/import?csrf={pages.csrf}", data={"group": "x"}
    ) as resp:
        assert resp.status == 400 and "Choose a CSV file" in await resp.text()
    # the CSRF token is required in the URL
    async with pages.client.post("/studio/contacts/import", data=form) as resp:
        assert resp.status == 403


async def test_a_contacts_timeline_and_runs(make_api: MakeApi) -> None:
    pages = await signed_in(make_api)
    api = pages.api
    cid = await create(api, "console:t", name="<script>alert(1)</script>")
    await api.post(f"/api/v1/contacts/{cid}/start", {"flow": "greeting"})

    async def waiting() -> bool:
        _, body = await api.get(f"/api/v1/contacts/{cid}/runs")
        return bool(body["runs"]) and body["runs"][0]["status"] == "waiting"

    await wait_for(waiting)
    status, html = await pages.get(f"/studio/contacts/{cid}")
    assert status == 200
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'class="bubble out' in html and "Hola &lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "greeting started" in html and "hello › ask" in html
    status, fragment = await pages.get(
        f"/studio/contacts/{cid}/timeline", headers={"X-Studio-Fragment": "1"}
    )
    assert status == 200 and fragment.startswith('<div class="chat"') and "<html" not in fragment
    _, listed = await pages.get("/studio/contacts?q=script")
    assert "&lt;script&gt;" in listed and "<script>alert" not in listed


async def test_start_in_flow_previews_then_starts(make_api: MakeApi) -> None:
    pages = await signed_in(make_api)
    api = pages.api
    cid = await create(api, "console:s", name="Sara")
    status, html = await pages.get(f"/studio/contacts/{cid}?flow=greeting")
    assert status == 200 and "This contact would start greeting." in html
    assert "Hola Sara" in html  # the first message, as the contact would see it
    status, where, _ = await pages.post(f"/studio/contacts/{cid}/start", {"flow": "greeting"})
    assert (status, where) == (303, f"/studio/contacts/{cid}")

    async def waiting() -> bool:
        _, body = await api.get(f"/api/v1/contacts/{cid}/runs")
        return bool(body["runs"]) and body["runs"][0]["status"] == "waiting"

    await wait_for(waiting)
    _, html = await pages.get(where)
    assert "Started in greeting." in html
    _, starts = await api.get("/api/v1/starts")
    assert [s["flow"] for s in starts["starts"]] == ["greeting"]  # a start like any other
    await api.request("PATCH", f"/api/v1/contacts/{cid}", {"status": "opted_out"})
    _, html = await pages.get(f"/studio/contacts/{cid}?flow=greeting")
    assert "This contact would not start: Opted out" in html and "Start now" not in html
    status, html = await pages.get(f"/studio/contacts/{cid}?flow=nope")
    assert status == 404 and "nope" in html
