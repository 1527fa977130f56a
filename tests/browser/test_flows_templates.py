"""Studio's Flows and Templates pages in Chromium, on the WhatsApp sandbox with the shipped
flows: the list and Reload, a flow diagram whose counts move while the page is open, the
templates synced and one template's page; on a desktop and a phone-width screen."""

from __future__ import annotations

from playwright.async_api import expect

from tests.browser.conftest import SignedIn, shot
from tests.support.whatsapp import WA


async def test_flows_list_reload_and_a_diagram_with_live_counts(
    wa: WA, signed_in: SignedIn
) -> None:
    page = await signed_in(wa)
    await wa.sync_templates()
    await page.get_by_role("link", name="Flows", exact=True).click()
    await expect(page.get_by_role("heading", name="Flows", exact=True)).to_be_visible()
    followup = page.locator("#flow-order_followup")
    await expect(followup.get_by_text("valid", exact=True)).to_be_visible()
    await page.get_by_role("button", name="Reload flows").click()
    await expect(page.get_by_role("status")).to_contain_text("Reloaded: 0 loaded")
    await shot(page, "flows")

    await followup.get_by_role("link", name="Order follow-up").click()
    await page.wait_for_url("**/studio/flows/order_followup")
    diagram = page.locator("svg.flow-diagram")
    await expect(diagram).to_be_visible()
    for node in ("open", "ask", "thanks", "reminder_message"):
        await expect(diagram.locator(f'g[data-node="{node}"]')).to_have_count(1)
    opening = diagram.locator('g[data-node="open"] text.template')
    await expect(opening).to_have_text("▣ order_delivered: APPROVED")
    ask = diagram.locator('g[data-node="ask"] text.waiting')
    await expect(ask).to_have_text("0 waiting")

    cid = await wa.contact("Ana Quispe", order_id="A-1042")
    await wa.start(cid, "order_followup")
    # the page is not reloaded: the live part brings the new counts within a few seconds
    await expect(ask).to_have_text("1 waiting", timeout=10_000)
    sent = diagram.locator('g[data-node="open"] g[data-exit="next"] text.count')
    await expect(sent).to_have_text("1")
    await shot(page, "flow-diagram")

    phone = await signed_in(wa, width=390)
    await phone.goto("/studio/flows/order_followup")
    await expect(phone.locator("svg.flow-diagram")).to_be_visible()
    await shot(phone, "flow-diagram-phone")


async def test_templates_sync_list_and_a_templates_page(wa: WA, signed_in: SignedIn) -> None:
    page = await signed_in(wa, locale="es-PE")
    await page.get_by_role("link", name="Plantillas", exact=True).click()
    await page.get_by_role("button", name="Sincronizar plantillas").click()
    await expect(page.get_by_role("status")).to_have_text("whatsapp: 6 plantillas sincronizadas")
    rejected = page.locator('[data-template="promo_rejected"]')
    await expect(rejected.get_by_text("REJECTED", exact=True)).to_be_visible()
    await expect(rejected.get_by_text("INVALID_FORMAT")).to_be_visible()
    body = page.locator('[data-template="order_delivered"] mark.placeholder').first
    await expect(body).to_have_text("{{1}}")
    await shot(page, "templates")

    await page.get_by_role("link", name="order_delivered").first.click()
    await page.wait_for_url("**/studio/templates/order_delivered")
    await expect(page.locator('[data-language="pt_BR"]')).to_be_visible()
    await expect(page.get_by_role("link", name="order_followup")).to_be_visible()
    await shot(page, "template")
