"""The shipped flows/welcome.yaml on WhatsApp: a new contact writes first through the sandbox
(signed webhooks over loopback) and gets the welcome and its menu as buttons."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.whatsapp import WA

FLOWS = Path(__file__).resolve().parent.parent / "flows"


@pytest.fixture
def wa_flows() -> dict[str, str]:
    names = ("welcome", "newsletter_signup", "newsletter_topics")
    return {name: (FLOWS / f"{name}.yaml").read_text(encoding="utf-8") for name in names}


async def test_a_new_contact_says_hola_and_gets_the_welcome_menu(wa: WA) -> None:
    await wa.inbound(text="¡Hola!")
    cid = (await wa.find("whatsapp:+51987650123"))["uuid"]
    hello, menu = await wa.settled(cid, 2)
    assert hello["text"] == "Hi Ana! I'm the Chasqui assistant."
    assert menu["quick_replies"] == ["Order", "Newsletter", "Person"]
    (body,) = [s["body"] for s in await wa.sent() if s["body"].get("type") == "interactive"]
    assert [b["reply"]["title"] for b in body["interactive"]["action"]["buttons"]] == [
        "Order",
        "Newsletter",
        "Person",
    ]
    await wa.inbound(type="interactive", interactive_id="Person", interactive_title="Person")
    *_, done = await wa.settled(cid, 3)
    assert done["text"] == "Done: a person will write to you here shortly."
    (run,) = await wa.runs(cid)
    assert (run["flow"], run["status"], run["trigger"]["type"]) == (
        "welcome",
        "completed",
        "keyword",
    )
    assert (await wa.find("whatsapp:+51987650123"))["groups"] == ["Wants a person"]
