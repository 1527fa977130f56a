"""Studio's Templates pages over real HTTP, on the WhatsApp sandbox: the list with status,
language, category, the body with its placeholders marked and the provider's reason; Sync as a
CSRF-checked POST; a template's page with the flows that send it (docs/studio.md, "Templates")."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import pytest

from tests.support.studio import Studio
from tests.support.whatsapp import ADMIN, WA


@pytest.fixture
async def pages(wa: WA) -> AsyncIterator[Studio]:
    jar = aiohttp.CookieJar(unsafe=True)  # cookies for 127.0.0.1, as a browser keeps them
    async with aiohttp.ClientSession(base_url=wa.base, cookie_jar=jar) as client:
        studio = Studio(SimpleNamespace(client=client, runtime=wa.runtime))  # type: ignore[arg-type]
        assert await studio.sign_in(ADMIN) == 303
        yield studio


async def synced(pages: Studio) -> None:
    status, location, _ = await pages.post("/studio/templates/sync")
    assert (status, location) == (303, "/studio/templates")


async def test_sync_then_the_list_shows_every_template_with_its_parts(pages: Studio) -> None:
    await synced(pages)
    status, html = await pages.get("/studio/templates")
    assert status == 200
    assert "whatsapp: 6 templates synced" in html  # the notice of the sync
    for name in ("order_delivered", "appointment_reminder", "promo_rejected", "paused_promo"):
        assert f'data-template="{name}"' in html
    assert '<mark class="placeholder">{{1}}</mark>, tu pedido <mark class="placeholder">' in html
    assert "Sí, lo recibí" in html and "UTILITY" in html and "pt_BR" in html
    rejected = html[html.index('data-template="promo_rejected"') :]
    assert 'badge bad">REJECTED' in rejected[:500] and "INVALID_FORMAT" in rejected[:1500]


async def test_filters_narrow_the_list(pages: Studio) -> None:
    await synced(pages)
    _, html = await pages.get("/studio/templates?status=rejected&language=")
    assert 'data-template="promo_rejected"' in html
    assert 'data-template="order_delivered"' not in html
    assert '<option value="REJECTED" selected>' in html
    _, html = await pages.get("/studio/templates?language=xx")
    assert "No synced template matches." in html
    status, html = await pages.get("/studio/templates?limit=0")
    assert status == 200  # not a filter of this page: ignored


async def test_a_templates_page_has_each_language_and_the_flows_that_send_it(
    pages: Studio, wa: WA
) -> None:
    shipped = Path(__file__).resolve().parent.parent / "flows" / "order_followup.yaml"
    (wa.runtime.registry.folder / "order_followup.yaml").write_bytes(shipped.read_bytes())
    assert "order_followup" in wa.runtime.load_flows().loaded
    await synced(pages)
    status, html = await pages.get("/studio/templates/order_delivered")
    assert status == 200
    assert 'data-language="es"' in html and 'data-language="pt_BR"' in html
    assert 'href="/studio/flows/order_followup">order_followup</a>: open, reminder_message' in html
    status, html = await pages.get("/studio/templates/nope")
    assert status == 404 and "No synced template is named nope." in html


async def test_sync_refuses_a_forged_form(pages: Studio) -> None:
    status, _, html = await pages.post("/studio/templates/sync", csrf=False)
    assert status == 403 and "The form expired or came from elsewhere" in html


async def test_a_template_from_the_provider_is_escaped(pages: Studio, wa: WA) -> None:
    item = {
        "name": "evil",
        "language": "es",
        "status": "REJECTED",
        "category": "<i>MARKETING</i>",
        "rejected_reason": "<script>alert(1)</script>",
        "components": [{"type": "BODY", "text": "<b>Hola</b> {{1}}"}],
    }
    await wa.runtime.store.save_templates("whatsapp", [item])
    _, html = await pages.get("/studio/templates")
    assert "<script>alert(1)</script>" not in html and "<b>Hola</b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert '&lt;b&gt;Hola&lt;/b&gt; <mark class="placeholder">{{1}}</mark>' in html
    assert "&lt;i&gt;MARKETING&lt;/i&gt;" in html
