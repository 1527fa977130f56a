"""Being the contact on the sandbox phone, in Chromium at a phone's width: the order follow-up
template arrives with its buttons, a tap answers it, the bot answers back, the ticks move."""

from __future__ import annotations

import re

from playwright.async_api import expect

from tests.browser.conftest import SignedIn, shot
from tests.support.waiting import wait_for
from tests.support.whatsapp import ANA, WA


async def test_reply_as_a_contact_from_the_sandbox_phone_by_tapping_a_button(
    wa: WA, signed_in: SignedIn
) -> None:
    cid = await wa.contact("Ana Quispe", order_id="A-1042")
    await wa.start(cid, "order_followup")
    page = await signed_in(wa, width=390)
    await page.get_by_role("link", name="Sandbox phone").first.click()
    await expect(page.get_by_role("heading", name="Chats")).to_be_visible()
    await page.get_by_role("link", name=re.compile("Ana Quispe|" + ANA)).first.click()

    template = page.locator("article.bubble.bot").filter(has_text="tu pedido A-1042")
    await expect(template).to_contain_text("Hola Ana, tu pedido A-1042 fue entregado.")
    await expect(template.locator(".tick.read")).to_be_visible()  # sent, delivered, read
    await shot(page, "phone-template")

    await template.get_by_role("button", name="Sí, lo recibí").click()
    await expect(page.locator("article.bubble.me").last).to_contain_text("Sí, lo recibí")
    # the flow answers (live, without reloading): thanks, then the rating as a list
    await expect(
        page.locator("article.bubble.bot").filter(has_text="¡Gracias, Ana!")
    ).to_be_visible()
    rating = page.locator("article.bubble.bot").filter(has_text="del 1 al 5")
    await expect(rating).to_be_visible()
    await shot(page, "phone-chat")

    async def received() -> bool:
        runs = await wa.runs(cid)
        return (
            bool(runs)
            and runs[0].get("results", {}).get("delivery", {}).get("category") == "Received"
        )

    await wait_for(received)


async def test_the_readme_demo_a_new_number_says_hola_and_the_bot_answers(
    wa: WA, signed_in: SignedIn
) -> None:
    page = await signed_in(wa, width=390)
    await page.get_by_role("link", name="Sandbox phone").first.click()
    await page.get_by_label("Number").fill("+51 987 650 777")
    await page.get_by_label("Name (optional)").fill("Rosa")
    await page.get_by_role("button", name="Open chat").click()
    await page.get_by_label("Message").fill("¡Hola!")
    await page.get_by_role("button", name="Send").click()
    menu = page.locator("article.bubble.bot").filter(has_text="What can I do for you?")
    await expect(menu).to_be_visible()
    await expect(page.locator("article.bubble.bot").first).to_contain_text("Hi Rosa!")
    await menu.get_by_role("button", name="Order").click()
    await expect(page.locator("article.bubble.me").last).to_contain_text("Order")
    await shot(page, "phone-welcome")
