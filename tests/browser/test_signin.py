"""Signing in and out of Studio in Chromium, on a phone-width screen and a desktop one."""

from __future__ import annotations

from playwright.async_api import expect

from tests.browser.conftest import OpenPage, SignedIn, shot
from tests.support.whatsapp import WA


async def test_sign_in_with_a_wrong_then_the_right_token_and_out(
    wa: WA, open_page: OpenPage
) -> None:
    page = await open_page(wa.base, width=390)
    await page.goto("/studio/?from=mail")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await shot(page, "signin-phone")
    await page.get_by_label("Token").fill("wrong")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_have_text("That token is not right.")
    await page.get_by_label("Token").fill("e2e-admin-token")
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url("**/studio/?from=mail")
    await page.get_by_role("link", name="Home", exact=True).click()
    await expect(page.get_by_role("region", name="whatsapp")).to_be_visible()
    menu = await page.get_by_role("navigation").bounding_box()
    assert menu is not None and menu["height"] < 60, "on a phone the menu is one row"
    await shot(page, "home-phone")
    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url("**/studio/signin")
    await page.goto("/studio/")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


async def test_home_in_spanish_follows_the_browser(wa: WA, signed_in: SignedIn) -> None:
    page = await signed_in(wa, locale="es-PE")
    await expect(page.get_by_role("heading", name="Inicio")).to_be_visible()
    await shot(page, "home")
