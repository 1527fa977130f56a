"""Studio's Flows pages over real HTTP: the list judges each file as ``chasqui check`` does,
Reload is a CSRF-checked POST for the write role, and a flow's page draws the flow with its
counts (docs/studio.md, "Flows")."""

from __future__ import annotations

import re

from markupsafe import escape

from bot.flow.files import load_folder
from tests.support.api import GREETING, MakeApi
from tests.support.studio import Studio
from tests.support.waiting import wait_for

READER = "reader-token-0123456789"
SCRIPT = "<script>alert(1)</script>"
NAMED_FLOW = f"""
name: "{SCRIPT}"
nodes:
  - id: hi
    send_message: {{text: "hola"}}
    next: ask
  - id: ask
    wait_for_reply:
      result: answer
      cases:
        - {{has_any_word: [si], category: "<b>Yes</b>", next: bye}}
  - id: bye
    send_message: {{text: "chao"}}
"""
BROKEN = "nodes:\n  - id: a\n    send_message: {text: x}\n    next: nowhere\n"


async def _studio(make_api: MakeApi, **flows: str) -> Studio:
    api = await make_api(
        {"greeting": GREETING, **flows},
        studio={"tokens": {"rosa": {"token": READER}}},
    )
    pages = Studio(api)
    assert await pages.sign_in() == 303
    return pages


async def test_the_list_shows_each_flow_and_a_broken_file_as_check_says_it(
    make_api: MakeApi,
) -> None:
    pages = await _studio(make_api, survey=NAMED_FLOW)
    (pages.api.flows / "broken.yaml").write_text(BROKEN)
    status, html = await pages.get("/studio/flows")
    assert status == 200
    assert 'href="/studio/flows/greeting"' in html and 'href="/studio/flows/survey"' in html
    _, problems = load_folder(pages.api.flows)
    assert len(problems) == 1  # what chasqui check prints, word for word
    assert str(escape(str(problems[0]))) in html
    section = html[html.index('id="flow-broken"') :]
    assert "invalid" in section[:600] and "not loaded" in section[:600]
    assert SCRIPT not in html and str(escape(SCRIPT)) in html


async def test_a_changed_file_says_reload_and_reload_makes_it_live(make_api: MakeApi) -> None:
    pages = await _studio(make_api)
    (pages.api.flows / "second.yaml").write_text(GREETING.replace("Chau", "Adiós"))
    _, html = await pages.get("/studio/flows")
    assert "changed since loaded: reload to use it" in html
    assert "second" not in pages.api.runtime.registry.flows
    status, location, _ = await pages.post("/studio/flows/reload")
    assert (status, location) == (303, "/studio/flows")
    assert "second" in pages.api.runtime.registry.flows
    _, html = await pages.get("/studio/flows")
    assert "Reloaded: 1 loaded, 1 unchanged, 0 removed." in html
    assert "changed since loaded" not in html


async def test_reload_with_a_broken_file_says_so_and_keeps_what_runs(make_api: MakeApi) -> None:
    pages = await _studio(make_api)
    (pages.api.flows / "greeting.yaml").write_text(BROKEN)
    status, _, _ = await pages.post("/studio/flows/reload")
    assert status == 303
    assert pages.api.runtime.registry.flows["greeting"].name == "Greeting"  # kept
    _, html = await pages.get("/studio/flows")
    assert "1 problem(s): see the flows below." in html
    assert "the previous version runs" in html and "unknown node &#39;nowhere&#39;" in html


async def test_reload_refuses_a_forged_form_and_a_read_only_user(make_api: MakeApi) -> None:
    pages = await _studio(make_api)
    (pages.api.flows / "second.yaml").write_text(GREETING)
    status, _, html = await pages.post("/studio/flows/reload", csrf=False)
    assert status == 403 and "The form expired or came from elsewhere" in html
    reader = Studio(pages.api)
    reader.client = pages.client  # same app; sign in again as the reader
    assert await reader.sign_in(READER) == 303
    status, _, html = await reader.post("/studio/flows/reload")
    assert status == 403 and "read-only" in html
    _, html = await reader.get("/studio/flows")
    assert "/studio/flows/reload" not in html  # no button to press
    assert "second" not in pages.api.runtime.registry.flows


async def test_a_flows_page_draws_it_with_its_counts_live(make_api: MakeApi) -> None:
    pages = await _studio(make_api, survey=NAMED_FLOW)
    status, _ = await pages.api.request(
        "POST", "/api/v1/starts", {"flow": "survey", "urns": ["console:ana", "console:bo"]}
    )
    assert status == 202

    async def two_waiting() -> bool:
        counters, _ = await pages.api.store.flow_counters("survey")
        return counters.get("wait:ask", 0) == 2

    await wait_for(two_waiting, "two contacts waiting at ask")
    status, html = await pages.get("/studio/flows/survey")
    assert status == 200
    for node in ("hi", "ask", "bye"):
        assert f'data-node="{node}"' in html
    assert "2 waiting" in html
    assert "&lt;b&gt;Yes&lt;/b&gt;" in html and "<b>Yes</b>" not in html
    assert SCRIPT not in html
    assert 'data-live="/studio/flows/survey/live"' in html
    status, live = await pages.get("/studio/flows/survey/live")
    assert status == 200 and live.lstrip().startswith('<div id="live" data-live=')
    assert "<html" not in live and "2 waiting" in live
    assert re.search(r'data-count="started">runs started <strong>2</strong>', live)


async def test_an_unknown_flow_is_a_404_page(make_api: MakeApi) -> None:
    pages = await _studio(make_api)
    for path in ("/studio/flows/nope", "/studio/flows/nope/live"):
        status, html = await pages.get(path)
        assert status == 404 and "no flow &#39;nope&#39;" in html


async def test_the_api_answers_the_check_the_page_shows(make_api: MakeApi) -> None:
    pages = await _studio(make_api)
    (pages.api.flows / "broken.yaml").write_text(BROKEN)
    (pages.api.flows / "greeting.yaml").write_text(GREETING + "\n")
    status, body = await pages.api.request("GET", "/api/v1/flows/check")
    assert status == 200
    by_id = {f["id"]: f for f in body["flows"]}
    assert set(by_id) == {"broken", "greeting"}
    broken, greeting = by_id["broken"], by_id["greeting"]
    assert (broken["valid"], broken["live_version"], broken["changed"]) == (False, None, True)
    [problem] = broken["problems"]
    assert problem["line"] == 4 and problem["field"] == "next"
    assert problem["text"].endswith("broken.yaml:4: nodes[0] (a): next: unknown node 'nowhere'")
    assert greeting["valid"] and greeting["changed"] and greeting["live_version"]
    _, html = await pages.get("/studio/flows")
    assert str(escape(problem["text"])) in html


TRIGGERED = """
triggers:
  - {keywords: [hola, "<b>"], match: any_word, interrupt: true}
  - {catch_all: true}
nodes:
  - id: hi
    send_message: {text: "hola"}
"""


async def test_a_flows_page_says_what_starts_it_when_a_contact_writes(
    make_api: MakeApi,
) -> None:
    pages = await _studio(make_api, welcome=TRIGGERED)
    status, html = await pages.get("/studio/flows/welcome")
    assert status == 200, html[-3000:]
    section = html[html.index("Starts when a contact writes") :][:1500]
    assert "<code>hola</code>" in section and "any of its words" in section
    assert "interrupts a waiting run" in section
    assert "matched no keyword" in section
    assert "<b>" not in section
    _, html = await pages.get("/studio/flows/greeting")
    assert "Starts when a contact writes" not in html
