"""Studio's Contacts pages in Chromium: import a CSV and read its report, search as you type,
a contact's timeline with its ticks and a failure in red, start a contact from its page, and a
contact named like a script shown as text."""

from __future__ import annotations

from playwright.async_api import Dialog, expect

from tests.browser.conftest import SignedIn, shot
from tests.support.whatsapp import ANA, WA

CSV = (
    "phone,name,field:order_id,groups\n"
    "+51987650201,Lucía Mamani,A-201,Clientes\n"
    "+51987650202,Luis Condori,A-202,Clientes\n"
    "+51987650203,Rosa Huamán,A-203,Clientes\n"
    "123,Número Malo,A-204,Clientes\n"
)


async def test_import_a_csv_then_search_as_you_type(wa: WA, signed_in: SignedIn) -> None:
    page = await signed_in(wa)
    await page.get_by_role("link", name="Contacts", exact=True).click()
    await page.get_by_label("CSV file").set_input_files(
        {"name": "clientes.csv", "mimeType": "text/csv", "buffer": CSV.encode()}
    )
    await page.get_by_role("button", name="Import", exact=True).click()
    await expect(page.get_by_role("status")).to_have_text("4 rows: 3 created, 0 updated, 1 failed.")
    await expect(page.get_by_role("cell", name="invalid_urn")).to_be_visible()
    await shot(page, "contacts-import")
    await page.get_by_role("link", name="Back to the contacts").click()
    await expect(page.locator("#rows tbody tr")).to_have_count(3)
    await page.get_by_label("Search").press_sequentially("lu", delay=40)
    await expect(page.locator("#rows tbody tr")).to_have_count(2)  # Lucía, Luis
    await page.get_by_label("Search").press_sequentially("c", delay=40)
    await expect(page.locator("#rows tbody tr")).to_have_count(1)
    await expect(page.get_by_role("link", name="Lucía Mamani")).to_be_visible()
    await page.get_by_label("Search").fill("")
    # a number as typed at home: no country code
    await page.get_by_label("Search").press_sequentially("987 650 2", delay=40)
    await expect(page.locator("#rows tbody tr")).to_have_count(3)
    await shot(page, "contacts-list")


async def test_a_contacts_timeline_shows_ticks_and_failures(wa: WA, signed_in: SignedIn) -> None:
    await wa.sync_templates()
    ana = await wa.contact("Ana Quispe", order_id="A-1042")
    await wa.start(ana, "order_followup")
    await wa.settled(ana, 1, "read")
    await wa.inbound(type="button", text="Sí, lo recibí")
    await wa.settled(ana, 3, "delivered")
    nobody = await wa.contact("Sin Pedido", phone="51987650999")  # no order_id: refused
    await wa.start(nobody, "order_followup")
    (refused,) = await wa.settled(nobody, 1)  # failed counts as settled
    assert refused["status"] == "failed", refused

    page = await signed_in(wa, width=390)
    await page.goto(f"/studio/contacts/{ana}")
    chat = page.locator("#timeline")
    opening = chat.locator(".bubble.out").first
    await expect(opening.locator(".tpl")).to_contain_text("order_delivered")
    await expect(opening).to_contain_text("A-1042")
    await expect(opening.locator(".tick.read")).to_have_text("✓✓")
    await expect(chat.locator(".bubble.in")).to_contain_text("Sí, lo recibí")
    await expect(chat.locator(".chat-event").first).to_contain_text("order_followup started")
    await expect(page.get_by_text("24-hour window open until")).to_be_visible()
    await expect(page.get_by_text("@results.delivery = ")).to_contain_text("Received")
    await shot(page, "contact-timeline-phone")

    await page.goto(f"/studio/contacts/{nobody}")
    failed = page.locator("#timeline .bubble.out.failed")
    await expect(failed).to_be_visible()
    await expect(failed.locator(".why")).not_to_be_empty()
    color = await failed.locator(".why").evaluate("e => getComputedStyle(e).color")
    assert color == "rgb(179, 38, 30)", color  # the stylesheet's --bad red
    await shot(page, "contact-failed")


async def test_a_script_name_is_text(wa: WA, signed_in: SignedIn) -> None:
    cid = await wa.contact("<script>alert(1)</script>", phone=ANA)
    page = await signed_in(wa)
    dialogs: list[str] = []

    def opened(dialog: Dialog) -> None:
        dialogs.append(dialog.message)

    page.on("dialog", opened)
    await page.goto("/studio/contacts")
    await expect(page.get_by_role("link", name="<script>alert(1)</script>")).to_be_visible()
    await page.goto(f"/studio/contacts/{cid}")
    await expect(page.get_by_role("heading", level=1)).to_contain_text("<script>alert(1)</script>")
    assert dialogs == []
    await shot(page, "contact-script-name")


async def test_start_one_contact_from_its_page(wa: WA, signed_in: SignedIn) -> None:
    await wa.sync_templates()
    cid = await wa.contact("Ana Quispe", order_id="A-77")
    page = await signed_in(wa)
    await page.goto(f"/studio/contacts/{cid}")
    await page.get_by_label("Flow", exact=True).select_option("order_followup")
    await page.get_by_role("button", name="Preview").click()
    await expect(page.get_by_text("This contact would start order_followup.")).to_be_visible()
    await expect(page.locator(".phone-bubble")).to_contain_text("A-77")
    await shot(page, "contact-start-preview")
    await page.get_by_role("button", name="Start now").click()
    await expect(page.get_by_role("status").first).to_have_text("Started in order_followup.")
    # the timeline refreshes itself: the template arrives, then its ticks
    opening = page.locator("#timeline .bubble.out").first
    await expect(opening).to_contain_text("A-77", timeout=15_000)
    await expect(opening.locator(".tick.read")).to_be_visible(timeout=15_000)
