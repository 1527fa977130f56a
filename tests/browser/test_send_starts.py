"""Send flow and Starts in Chromium: send the shipped order follow-up flow to a group, watch the
start complete, see the contact the sandbox failed by name with its reason, retry it."""

from __future__ import annotations

from playwright.async_api import expect

from tests.browser.conftest import SignedIn, shot
from tests.support.whatsapp import WA

PEOPLE = [("Ana Quispe", "51987650301", "A-1"), ("Beto Ruiz", "51987650302", "B-2")]


async def _group(wa: WA) -> None:
    assert await wa.sync_templates() > 0
    cids = [await wa.contact(name, phone, order_id=order) for name, phone, order in PEOPLE]
    status, group = await wa.api("POST", "/api/v1/groups", {"name": "Clientes"})
    assert status == 201, group
    status, added = await wa.api(
        "POST", f"/api/v1/groups/{group['uuid']}/members", {"contacts": cids}
    )
    assert status == 200 and added["added"] == 2, added


async def test_send_a_flow_to_a_group_follow_it_and_retry_the_failed(
    wa: WA, signed_in: SignedIn
) -> None:
    await _group(wa)
    # Meta refuses the send to Beto once, after accepting it (a failed status webhook)
    await wa.fake(
        "POST", "errors", {"match": {"to": PEOPLE[1][1]}, "code": 131026, "mode": "async"}
    )
    page = await signed_in(wa)
    await page.get_by_role("link", name="Send flow").click()
    await page.get_by_label("Flow", exact=True).select_option("order_followup")
    await page.get_by_label("Clientes").check()
    await page.get_by_label("Find contacts by name, number or field").fill("ana")
    await expect(page.locator("#found").get_by_text("Ana Quispe")).to_be_visible()  # as you type
    await page.get_by_role("button", name="Preview").click()
    await expect(page.get_by_text("Would start 2 of 2 contacts")).to_be_visible()
    bubble = page.locator(".phone-bubble")
    await expect(bubble).to_contain_text("tu pedido")
    await expect(bubble.locator(".bubble-button").first).to_be_visible()
    await shot(page, "send-preview")

    await page.get_by_role("button", name="Send", exact=True).click()
    await page.wait_for_url("**/studio/starts/*")
    await expect(page.get_by_role("status")).to_have_text("Started.")
    await expect(page.get_by_text("by admin")).to_be_visible()
    await expect(page.locator("#status")).to_have_text("completed", timeout=30_000)
    await expect(page.locator("#failed")).to_have_text("1", timeout=30_000)  # live, no reload
    await page.reload()
    failed = page.locator("table.failed")
    await expect(failed.get_by_role("link", name="Beto Ruiz")).to_be_visible()
    await expect(failed).to_contain_text("undeliverable Message Undeliverable.")
    await expect(page.get_by_text("Failures by error")).to_be_visible()
    await expect(page.locator("svg.chart")).to_be_visible()
    await shot(page, "start")

    await page.get_by_role("button", name="Retry failed").click()
    await expect(page.get_by_role("status")).to_have_text("Retrying 1 failed contacts.")
    await expect(page.locator("#status")).to_have_text("completed", timeout=30_000)
    await expect(page.locator("#started")).to_have_text("1", timeout=30_000)
    await expect(page.locator("#failed")).to_have_text("0")

    await page.get_by_role("link", name="Starts", exact=True).click()
    await expect(page.locator("table tbody tr")).to_have_count(2)
    await shot(page, "starts")


async def test_the_starts_page_on_a_phone_in_spanish(wa: WA, signed_in: SignedIn) -> None:
    await _group(wa)
    status, start = await wa.api(
        "POST", "/api/v1/starts", {"flow": "order_followup", "groups": ["Clientes"]}
    )
    assert status == 202, start
    page = await signed_in(wa, width=390, locale="es-PE")
    await page.goto("/studio/starts")
    await expect(page.get_by_role("heading", name="Envíos")).to_be_visible()
    await expect(page.get_by_text("por la API").first).to_be_visible()
    await page.locator(f"a[href='/studio/starts/{start['uuid']}']").click()
    await expect(page.locator("#status")).to_have_text("completado", timeout=30_000)
    await shot(page, "start-phone-es")
