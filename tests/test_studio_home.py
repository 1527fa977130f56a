"""Studio's home over real HTTP: the WhatsApp channel on the sandbox with its number, health,
rate and phone; a start running with its progress (and the fragment that refreshes it); the
problems: a flow whose template the channel refuses, a start whose send failed. Also what
``chasqui serve`` prints about where Studio and the phone are."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import aiohttp
import pytest

from bot.cli.where import where
from bot.core.config import load_config
from bot.work.starts import COMPLETED, STARTING
from tests.support.waiting import wait_for
from tests.support.whatsapp import ADMIN, WA

FLOWS = Path(__file__).resolve().parents[1] / "flows"
PAUSED = """\
name: Paused promo
language: en
nodes:
  - id: promo
    send_message:
      text: "Our weekend promo"
      template: {name: paused_promo, language: en}
"""


@pytest.fixture
def wa_flows() -> Mapping[str, str]:
    return {"order_followup": (FLOWS / "order_followup.yaml").read_text(), "promo": PAUSED}


class Browser:
    """A signed-in client keeping Studio's cookies (loopback addresses included)."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http, self.base = http, base

    async def get(self, path: str, **headers: str) -> tuple[int, str]:
        async with self.http.get(self.base + path, headers=headers) as r:
            return r.status, await r.text()


@pytest.fixture
async def browser(wa: WA) -> AsyncIterator[Browser]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(wa.base + "/studio/signin") as r:
            found = re.search(r'name="csrf" value="([^"]+)"', await r.text())
        assert found is not None
        form = {"csrf": found.group(1), "token": ADMIN, "next": "/studio/"}
        async with http.post(wa.base + "/studio/signin", data=form) as r:
            assert r.status == 200 and r.url.path == "/studio/"
        yield Browser(http, wa.base)


async def test_the_channel_shows_its_number_health_rate_and_phone(browser: Browser) -> None:
    status, html = await browser.get("/studio/")
    assert status == 200
    assert "+15550142200" in html and "sandbox (a stand-in of Meta&#39;s Graph API)" in html
    assert '<span class="badge ok">' in html
    assert "Rate limit</th><td>none" in html  # max_mps = 0 in the tests' channel
    assert 'href="/studio/channels/whatsapp/phone/"' in html


async def test_a_running_start_shows_with_progress_and_refreshes(wa: WA, browser: Browser) -> None:
    cid = await wa.contact("Ana", order_id="A-1")
    sid = await wa.runtime.store.create_start(
        {
            "flow": "order_followup",
            "status": STARTING,
            "created_on": 1.0,
            "targeted": 4,
            "started": 1,
            "skipped": 1,
            "msg_sent": 1,
        },
        [cid],
        [],
        1.0,
    )
    status, html = await browser.get("/studio/")
    assert f'href="/studio/starts/{sid}"' in html
    assert 'aria-valuenow="50"' in html and "2 / 4" in html
    status, part = await browser.get("/studio/home/running", **{"X-Studio-Fragment": "1"})
    assert status == 200 and part.startswith('<div id="running" data-live=')
    assert "2 / 4" in part and "<html" not in part
    await wa.runtime.store.end_start(sid, {"status": COMPLETED})
    _, part = await browser.get("/studio/home/running")
    assert sid not in part and "No start is running." in part


async def test_problems_name_the_refused_template_and_the_failed_start(
    wa: WA, browser: Browser
) -> None:
    await wa.sync_templates()
    await wa.fake(
        "POST", "errors", {"match": {"to": "51987650999"}, "code": 131026, "mode": "async"}
    )
    cid = await wa.contact("Luis <b>", phone="51987650999", order_id="A-7")
    status, body = await wa.api(
        "POST", "/api/v1/starts", {"flow": "order_followup", "contacts": [cid]}
    )
    assert status == 202, body

    async def failed() -> bool:
        _, start = await wa.api("GET", f"/api/v1/starts/{body['uuid']}")
        return bool(start["messages"]["failed"])

    await wait_for(failed, "the send to fail", timeout=10)
    _, html = await browser.get("/studio/")
    problems = html.split("Problems to look at", 1)[1]
    assert 'href="/studio/flows/promo"' in problems and "<code>promo</code>" in problems
    assert "paused" in problems.lower()
    assert f'href="/studio/starts/{body["uuid"]}"' in problems


def test_serve_says_where_studio_and_the_phone_are(tmp_path: Path) -> None:
    from aiohttp import web

    from bot.api.app import create_app

    path = tmp_path / "config.toml"  # the shipped configuration, as a new user runs it
    path.write_text((Path(__file__).resolve().parents[1] / "config.toml").read_text())
    config = load_config(path)
    app: web.Application = create_app(config)
    text = where(config, app)
    assert "Studio:  http://127.0.0.1:8080/studio/" in text
    assert str(tmp_path / "var" / "admin-token") in text
    assert (
        "Sandbox phone (whatsapp):  http://127.0.0.1:8080/studio/channels/whatsapp/phone/" in text
    )
