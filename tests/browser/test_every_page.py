"""Every page Studio's menu links to, and one page of each kind those pages link to (a start,
a contact, a flow, ...), visited in Chromium at a desktop and a phone width: none answers 5xx,
none logs a console error (the ``open_page`` fixture fails the test on either), and each is
saved as a screenshot for a reviewer."""

from __future__ import annotations

import re

from playwright.async_api import Page

from tests.browser.conftest import SignedIn, shot
from tests.support.whatsapp import WA

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
SKIP = ("/studio/static/", "/studio/signout", "/studio/signin")


def shape(path: str) -> str:
    """A page's kind: its path with ids masked (``/studio/starts/<id>``)."""
    return re.sub(r"/\d[\d.-]*(?=/|$)", "/<n>", UUID.sub("<id>", path))


def name_of(path: str) -> str:
    """A file name for a page's screenshot: ``starts-id``, ``home``."""
    words = shape(path).removeprefix("/studio/").strip("/").replace("<", "").replace(">", "")
    return re.sub(r"[^a-z0-9]+", "-", words.lower()).strip("-") or "home"


async def links(page: Page, selector: str = "a[href^='/studio/']:not([download])") -> list[str]:
    """The Studio pages ``selector`` links to (not files: a CSV export is a download)."""
    hrefs = await page.locator(selector).evaluate_all("els => els.map(e => e.getAttribute('href'))")
    paths = [h.split("#")[0].split("?")[0] for h in hrefs if h]
    return [
        p
        for p in paths
        if not p.startswith(SKIP) and "/static/" not in p and "." not in p.rsplit("/", 1)[-1]
    ]


async def some_data(wa: WA) -> None:
    """A contact who got the order follow-up and one whose send failed, so that the pages
    that list things have something to list and link to."""
    await wa.sync_templates()  # as the server does once it runs; a test is quicker than that
    ana = await wa.contact("Ana Quispe", order_id="A-1042")
    await wa.start(ana, "order_followup")
    await wa.fake(
        "POST", "errors", {"match": {"to": "51987650999"}, "code": 131026, "mode": "async"}
    )
    bad = await wa.contact("Luis <script>alert(1)</script>", phone="51987650999", order_id="A-7")
    await wa.start(bad, "order_followup")


async def test_every_page_linked_from_the_menu_answers_and_logs_no_error(
    wa: WA, signed_in: SignedIn
) -> None:
    await some_data(wa)
    refused: list[str] = []  # every page that answered an error, not only the first
    for width, suffix in ((1000, ""), (390, "-phone")):
        page = await signed_in(wa, width=width)
        menu = list(dict.fromkeys(await links(page, "header nav a")))
        assert "/studio/" in menu and len(menu) >= 7, menu
        seen = {shape(p) for p in menu}
        visit = list(menu)
        for path in menu:
            response = await page.goto(path)
            if response is None or response.status >= 400:
                continue  # reported below, when visited
            for link in await links(page):
                if shape(link) not in seen:
                    seen.add(shape(link))
                    visit.append(link)
        for path in visit:
            response = await page.goto(path)
            status = response.status if response is not None else 0
            if status >= 400 or status == 0:
                refused.append(f"{path}: {status}")
                continue
            await shot(page, "page-" + name_of(path) + suffix)
        await page.context.close()
    assert not refused, "\n".join(refused)
