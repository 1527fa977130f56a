"""What a start says happened, against Chasqui on the WhatsApp sandbox (real HTTP, real Valkey):
a contact whose opening message did not go out -- refused here or by Meta -- is ``failed`` with
its reason and the human message; the counts add up; a start whose opening template cannot be
sent is refused before anything is queued; a retry skips contacts that succeeded meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from bot.api import models as m
from bot.api import start_service as svc
from bot.api.app import OPS
from bot.api.openapi import openapi_document
from bot.cli.main import main
from tests.support.api import GREETING
from tests.support.waiting import wait_for
from tests.support.whatsapp import ADMIN, WA


def opening(message: str) -> str:
    """The greeting flow (hello, ask, bye) opening with ``message`` (a send_message body)."""
    hello = 'send_message: {text: "Hola @contact.first_name"}'
    assert hello in GREETING
    return GREETING.replace(hello, f"send_message: {message}")


FLOWS = {
    "open_text": opening('{text: "Hola"}'),
    "delivered": opening(
        '{template: {name: order_delivered, body: ["@contact.first_name", "@fields.order"]}}'
    ),
    "typo": opening("{template: {name: order_delivred, body: [a, b]}}"),
    "rejected": opening("{template: {name: promo_rejected, body: [a, b]}}"),
    "params": opening("{template: {name: order_delivered, body: [a]}}"),
}

PHONES = ["51987650201", "51987650202", "51987650203", "51987650204"]


@pytest.fixture
def wa_flows() -> Mapping[str, str]:
    return FLOWS


async def finished(wa: WA, sid: str, sent: int = 0) -> dict[str, Any]:
    """The start once it completed and ``sent`` + its failed messages are all settled."""

    async def done() -> dict[str, Any] | None:
        status, start = await wa.api("GET", f"/api/v1/starts/{sid}")
        assert status == 200, start
        m = start["messages"]
        settled = start["status"] == "completed" and m["sent"] + m["failed"] >= sent
        return start if settled else None

    return await wait_for(done, f"start {sid} settled")


async def contacts_of(wa: WA, sid: str, status: str) -> list[dict[str, Any]]:
    code, page = await wa.api("GET", f"/api/v1/starts/{sid}/contacts?status={status}")
    assert code == 200, page
    return sorted(page["contacts"], key=lambda c: str(c["contact"]))


def add_up(counts: dict[str, Any]) -> bool:
    return bool(counts["targeted"] == counts["started"] + counts["skipped"] + counts["failed"])


async def test_an_opening_refused_here_is_failed_like_one_refused_by_meta(wa: WA) -> None:
    await wa.sync_templates()
    inside = await wa.contact("Ana Quispe", PHONES[0])
    outside = await wa.contact("Beto Ruiz", PHONES[1])
    await wa.fake("POST", "inbound", {"from": PHONES[0], "name": "Ana", "text": "hola"})

    async def window_open() -> bool:
        contact = (await wa.api("GET", f"/api/v1/contacts/{inside}"))[1]
        return bool((contact.get("last_inbound") or {}).get("whatsapp"))

    await wait_for(window_open, "Ana's inbound message")
    urns = [f"whatsapp:+{p}" for p in PHONES[:2]]
    status, start = await wa.api("POST", "/api/v1/starts", {"flow": "open_text", "urns": urns})
    assert status == 202, start
    done = await finished(wa, start["uuid"], sent=2)
    assert done["counts"]["started"] == 1 and done["counts"]["failed"] == 1
    assert add_up(done["counts"]) and done["sending"] == 0
    assert done["messages"]["sent"] == 1 and done["messages"]["failed"] == 1
    assert done["messages"]["failed_by_code"] == {"outside_24h_window": 1}
    (failed,) = await contacts_of(wa, start["uuid"], "failed")
    assert failed["contact"] == outside and failed["reason"] == "outside_24h_window"
    assert "24-hour window" in failed["message"]
    (started,) = await contacts_of(wa, start["uuid"], "started")
    assert started["contact"] == inside
    # the outcomes over time: the refusal here and the send, each in the minute it happened
    (minute, counts), *later = await wa.runtime.store.start_timeline(start["uuid"])
    assert minute % 60 == 0 and abs(minute - done["created_on"]) < 120
    total = {k: counts[k] + sum(c[k] for _, c in later) for k in counts}
    assert total["sent"] == 1 and total["failed"] == 1

    # a template whose parameter is empty is refused by our channel before Meta: the same
    # rule, with the channel's message naming the parameter
    await wa.contact("Caro Paz", PHONES[2], order="A-7")
    await wa.contact("Dani Sol", PHONES[3])
    urns = [f"whatsapp:+{p}" for p in PHONES[2:]]
    status, start = await wa.api("POST", "/api/v1/starts", {"flow": "delivered", "urns": urns})
    assert status == 202, start
    done = await finished(wa, start["uuid"], sent=2)
    assert (done["counts"]["started"], done["counts"]["failed"]) == (1, 1)
    assert add_up(done["counts"])
    (failed,) = await contacts_of(wa, start["uuid"], "failed")
    assert failed["reason"] == "template_param_empty"
    assert "parameter 2" in failed["message"] and "empty" in failed["message"]
    timeline = await wa.runtime.store.start_timeline(start["uuid"])  # refused by the channel
    assert sum(c["failed"] for _, c in timeline) == 1 and sum(c["sent"] for _, c in timeline) == 1


@pytest.mark.parametrize(
    ("flow", "code", "words"),
    [
        ("typo", "template_not_found", "order_delivred"),
        ("rejected", "template_not_approved", "REJECTED"),
        ("params", "template_params_mismatch", "body"),
    ],
)
async def test_a_start_whose_opening_template_cannot_be_sent_is_refused(
    wa: WA, flow: str, code: str, words: str
) -> None:
    await wa.sync_templates()
    cid = await wa.contact("Ana Quispe", PHONES[0])
    status, preview = await wa.api(
        "POST", "/api/v1/starts/preview", {"flow": flow, "contacts": [cid]}
    )
    assert status == 200, preview
    (problem,) = preview["template_problems"]
    assert problem["code"] == code and problem["node"] == "hello" and words in problem["message"]
    for path, body in [
        ("/api/v1/starts", {"flow": flow, "contacts": [cid]}),
        (f"/api/v1/contacts/{cid}/start", {"flow": flow}),
    ]:
        status, err = await wa.api("POST", path, body)
        assert status == 422, err
        assert err["error"]["code"] == code and words in err["error"]["message"]
        assert err["error"]["details"]["node"] == "hello"
    status, listed = await wa.api("GET", "/api/v1/starts")
    assert listed["starts"] == []  # nothing stored, nothing queued
    assert await wa.messages(cid) == []


async def test_reload_reports_template_problems(wa: WA) -> None:
    await wa.sync_templates()
    status, report = await wa.api("POST", "/api/v1/flows/reload")
    assert status == 200, report
    found = {(p["flow"], p["node"], p["code"]) for p in report["template_problems"]}
    assert found == {
        ("typo", "hello", "template_not_found"),
        ("rejected", "hello", "template_not_approved"),
        ("params", "hello", "template_params_mismatch"),
    }


def cli(wa: WA, tmp_path: Path, *argv: str, token: str = ADMIN) -> tuple[int, str, str]:
    """``chasqui <argv>`` against the running server, in this process (in a thread)."""
    config = tmp_path / "cli.toml"
    config.write_text(f'[server]\npublic_url = "{wa.base}"\nadmin_token = "{token}"\n')
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--config", str(config), *argv])
    return code, out.getvalue(), err.getvalue()


async def test_the_cli_fails_when_every_contact_failed_and_finds_a_start_by_prefix(
    wa: WA, tmp_path: Path
) -> None:
    await wa.sync_templates()
    beto = await wa.contact("Beto Ruiz", PHONES[1])  # never wrote: free text cannot reach him
    urn = f"whatsapp:+{PHONES[1]}"
    code, out, err = await asyncio.to_thread(cli, wa, tmp_path, "start", "open_text", "--urn", urn)
    assert code == 1, (out, err)
    assert "targeted 1, started 0, skipped 0, failed 1" in out.splitlines()[-1]
    assert "every contact failed" in err
    sid = out.split()[1]
    code, out, err = await asyncio.to_thread(cli, wa, tmp_path, "starts", sid[:8], "--failed")
    assert code == 0, err
    assert out.startswith(beto)
    assert "outside_24h_window: free text outside the contact's 24-hour window" in out

    code, out, err = await asyncio.to_thread(cli, wa, tmp_path, "start", "typo", "--urn", urn)
    assert code == 1 and "error: template_not_found" in err

    # seventeen starts: two of them begin with the same hex digit
    sids = [sid]
    for _ in range(16):
        status, start = await wa.api("POST", "/api/v1/starts", {"flow": "open_text", "urns": [urn]})
        assert status == 202, start
        sids.append(start["uuid"])
    first = next(s[0] for s in sids if sum(t[0] == s[0] for t in sids) > 1)
    code, out, err = await asyncio.to_thread(cli, wa, tmp_path, "starts", first)
    assert code == 1 and "ambiguous_start" in err
    assert all(s in err for s in sids if s[0] == first)
    code, out, err = await asyncio.to_thread(cli, wa, tmp_path, "starts", "zz")
    assert code == 1 and "unknown_start" in err


def test_the_openapi_document_describes_what_starts_now_say() -> None:
    doc = openapi_document(OPS)
    schemas = doc["components"]["schemas"]
    assert {"retry", "retry_of", "sending"} <= set(schemas["Start"]["properties"])
    assert "message" in schemas["Outcome"]["properties"]
    assert "template_problems" in schemas["Preview"]["properties"]
    assert "template_problems" in schemas["ReloadReport"]["properties"]
    refused = doc["paths"]["/api/v1/starts"]["post"]["responses"]["422"]["description"]
    for code in ("template_not_found", "template_not_approved", "template_params_mismatch"):
        assert code in refused
    retry = doc["paths"]["/api/v1/starts/{uuid}/retry"]["post"]["responses"]
    assert "template_not_found" in retry["422"]["description"]


async def test_the_cli_previews_schedules_spreads_cancels_and_retries(
    wa: WA, tmp_path: Path
) -> None:
    await wa.sync_templates()
    caro = await wa.contact("Caro Paz", PHONES[2], order="A-7")
    dani = await wa.contact("Dani Sol", PHONES[3], order="A-8")
    status, group = await wa.api("POST", "/api/v1/groups", {"name": "clientes"})
    assert status == 201, group
    status, added = await wa.api(
        "POST", f"/api/v1/groups/{group['uuid']}/members", {"contacts": [caro, dani]}
    )
    assert status == 200 and added["added"] == 2, added

    def run(*argv: str) -> tuple[int, str, str]:
        return cli(wa, tmp_path, *argv)

    code, out, err = await asyncio.to_thread(run, "start", "delivered")
    assert code == 1 and "--group NAME, --urn URN or --contact UUID" in err
    code, out, err = await asyncio.to_thread(run, "start", "delivered", "--group", "clientas")
    assert code == 1 and "unknown_group" in err and "the groups are: 'clientes'" in err
    code, out, err = await asyncio.to_thread(run, "start", "delivred", "--group", "clientes")
    assert code == 1 and "the flows loaded: delivered, open_text" in err

    code, out, err = await asyncio.to_thread(
        run, "start", "delivered", "--group", "clientes", "--preview"
    )
    assert code == 0, err
    assert out.splitlines()[0] == "delivered: would start 2 of 2 contacts"
    assert "opens with the template order_delivered (es)" in out
    code, out, err = await asyncio.to_thread(
        run, "start", "typo", "--group", "clientes", "--preview"
    )
    assert code == 1 and "template_not_found" in out and "every contact would fail" in out
    assert (await wa.api("GET", "/api/v1/starts"))[1]["starts"] == []  # a preview starts nothing

    code, out, err = await asyncio.to_thread(
        run, "start", "delivered", "--group", "clientes", "--send-at", "+1h", "--exclude-active"
    )
    assert code == 0 and " at " in out.splitlines()[0], (out, err)
    scheduled = out.split()[1]
    status, start = await wa.api("GET", f"/api/v1/starts/{scheduled}")
    assert start["status"] == "pending" and start["exclude_active"] is True
    assert abs(start["send_at"] - (start["created_on"] + 3600)) < 5
    code, out, err = await asyncio.to_thread(run, "starts", "cancel", scheduled[:13])
    assert code == 0 and f"start {scheduled} cancelled" in out, err
    assert (await wa.api("GET", f"/api/v1/starts/{scheduled}"))[1]["status"] == "cancelled"

    code, out, err = await asyncio.to_thread(
        run, "start", "delivered", "--contact", caro, "--spread-over", "2m", "--no-wait"
    )
    assert code == 0, err
    status, start = await wa.api("GET", f"/api/v1/starts/{out.split()[1]}")
    assert start["spread_over"] == 120

    # Beto never wrote: free text fails for him; the retry is a new start of the failed contact
    beto = await wa.contact("Beto Ruiz", PHONES[1])
    code, out, err = await asyncio.to_thread(run, "start", "open_text", "--contact", beto)
    failed = out.split()[1]
    code, out, err = await asyncio.to_thread(run, "starts", "retry", failed, "--no-wait")
    assert code == 0 and "retries 1 failed contacts" in out, (out, err)
    status, retry = await wa.api("GET", f"/api/v1/starts/{out.split()[1]}")
    assert retry["retry_of"] == failed
    code, out, err = await asyncio.to_thread(run, "starts", "cancel")
    assert code == 1 and "chasqui starts cancel UUID" in err

    code, out, err = await asyncio.to_thread(cli, wa, tmp_path, "starts", token="not-it")
    assert code == 1 and "refused the admin token read from server.admin_token" in err


async def test_a_preview_shows_the_opening_as_a_sample_contact_sees_it(wa: WA) -> None:
    await wa.sync_templates()
    caro = await wa.contact("Caro Paz", PHONES[2], order="A-7")
    dani = await wa.contact("Dani Sol", PHONES[3])  # no order: the template's parameter is empty
    rt = wa.runtime

    async def opening(flow: str, cid: str) -> svc.Opening:
        spec = await svc.resolve(rt, m.StartCreate(flow=flow, contacts=[cid]))
        shown = await svc.opening_for(rt, spec)
        assert shown is not None and shown.contact["uuid"] == cid
        return shown

    shown = await opening("delivered", caro)
    assert shown.template is not None and shown.template.problem is None
    assert shown.template.body == "Hola Caro, tu pedido A-7 fue entregado. ¿Lo recibiste?"
    assert shown.channel == "whatsapp" and shown.error is None
    shown = await opening("delivered", dani)
    assert shown.template is not None and shown.template.problem is not None
    shown = await opening("open_text", dani)  # never wrote: free text cannot reach her
    assert shown.template is None and shown.text == "Hola"
    assert shown.error == "outside_24h_window"
    assert await wa.messages(caro) == [] and await wa.messages(dani) == []  # nothing was sent
