"""Studio in a real browser: headless Chromium from Debian's ``chromium`` package, driven by
Playwright for Python with that executable (no browser download is possible here; see
/work/shared/reference/browser-tests.md and docs/studio.md, "Browser tests").

Fixtures:
- ``wa``: Chasqui with its WhatsApp channel on the sandbox, serving the shipped flows (flows/);
- ``browser``: Chromium, one per test;
- ``open_page(base, width=1000, locale="en-US")``: a page that fails the test on any console
  error, uncaught script error or 5xx answer;
- ``signed_in(wa, width=1000, token=ADMIN, locale="en-US")``: such a page, signed in to Studio.
``shot(page, name)`` saves a PNG of the page into the folder printed at the end of the run.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, Response, async_playwright

from tests.support.whatsapp import ADMIN, WA

CHROMIUM = os.environ.get("CHASQUI_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium keeps trying to reach Google's hosts, which
# this closed network refuses; --no-sandbox because tests run as root (CI too).
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = Path(os.environ.get("CHASQUI_SCREENSHOTS", Path(tempfile.gettempdir()) / "chasqui-studio"))
FLOWS = Path(__file__).resolve().parents[2] / "flows"

OpenPage = Callable[..., Awaitable[Page]]
SignedIn = Callable[..., Awaitable[Page]]


def shot(page: Page, name: str) -> Awaitable[bytes]:
    """A full-page PNG of ``page`` as ``<SHOTS>/<name>.png``, for a reviewer to look at."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    return page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if SHOTS.is_dir() and any(SHOTS.glob("*.png")):
        terminalreporter.write_line(f"Studio screenshots: {SHOTS}")


@pytest.fixture
def wa_flows() -> dict[str, str]:
    """The shipped flows, as a new user runs them."""
    return {path.stem: path.read_text() for path in sorted(FLOWS.glob("*.yaml"))}


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.skip(
            f"NO BROWSER: {CHROMIUM} is missing, so Studio's browser tests did not run. "
            "Install Debian's chromium (apt-get install -y chromium; .ci/run does) or set "
            "CHASQUI_CHROMIUM to a Chromium executable."
        )
    async with async_playwright() as playwright:
        found = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield found
        finally:
            await found.close()


@pytest.fixture
def open_page(browser: Browser) -> Iterator[OpenPage]:
    problems: list[str] = []

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(f"console error: {message.text} at {message.location}")

    def answered(response: Response) -> None:
        if response.status >= 500:
            problems.append(f"{response.status} from {response.url}")

    async def make(base: str, width: int = 1000, locale: str = "en-US") -> Page:
        context = await browser.new_context(
            base_url=base, viewport={"width": width, "height": 800}, locale=locale
        )
        page = await context.new_page()
        page.on("console", console)
        page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
        page.on("response", answered)
        return page

    yield make
    assert not problems, "\n".join(problems)


@pytest.fixture
def signed_in(open_page: OpenPage) -> SignedIn:
    async def make(wa: WA, width: int = 1000, token: str = ADMIN, locale: str = "en-US") -> Page:
        page = await open_page(wa.base, width, locale)
        await page.goto("/studio/")
        await page.locator("#token").fill(token)
        await page.locator("form[action='/studio/signin'] button").click()
        await page.wait_for_url("**/studio/")
        return page

    return make
