"""Every node kind, run for real: YAML flow -> worker -> Valkey -> capturing channel."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis

from bot.engine.sprint import Route
from bot.work.webhook_calls import WebhookCaller
from tests.support.harness import Bot, MakeBot

AiohttpServer = Any  # the pytest-aiohttp ``aiohttp_server`` factory


@pytest.fixture
async def bot(make_bot: MakeBot) -> Bot:
    return await make_bot(channel_names=("cap", "alt"))


# -- send_message ----------------------------------------------------------------------------


async def test_send_message_text_quick_replies_attachment_and_template(bot: Bot) -> None:
    bot.write(
        "promo",
        """
        language: es
        nodes:
          - id: hello
            send_message:
              text: "Hola @contact.first_name, pedido @fields.order_id"
              quick_replies: ["Sí @fields.order_id", "No"]
              attachment: "https://x.test/@fields.order_id/a.png"
              template:
                name: order_delivered
                header: ["@fields.order_id"]
                body: ["@contact.first_name", "@fields.order_id"]
                buttons: [{quick_reply: "RECEIVED"}]
            next: named
          - id: named
            send_message:
              template:
                name: named_params
                language: pt_BR
                body: {name: "@contact.name"}
        """,
    )
    cid = await bot.contact(fields={"order_id": "A-7"})
    await bot.start(cid, "promo")
    await bot.drain()

    first, second = bot.channel.sent
    # a channel without templates gets the text (and the rest), not the template
    assert first["text"] == "Hola Ana, pedido A-7"
    assert first["quick_replies"] == ["Sí A-7", "No"]
    assert first["attachment"] == "https://x.test/A-7/a.png"
    assert "template" not in first
    assert first["urn"] == "tel:+15550001" and first["channel"] == "cap"
    # a template alone still goes (the channel shows it, or refuses it)
    assert "text" not in second
    assert second["template"]["language"] == "pt_BR"
    assert second["template"]["body"] == {"name": "Ana Souza"}

    # a channel that uses templates (WhatsApp) gets the template alone
    bot.registry.routes = [Route("cap", ("tel",), templates=True)]
    bot.registry.reload()
    bot.channel.sent.clear()
    await bot.start(cid, "promo")
    await bot.drain()
    first, second = bot.channel.sent
    assert set(first) & {"text", "quick_replies", "attachment"} == set()
    assert first["template"] == {
        "name": "order_delivered",
        "language": "es",  # the flow's language when the template names none
        "header": ["A-7"],
        "body": ["Ana", "A-7"],
        "buttons": [{"quick_reply": "RECEIVED"}],
    }
    assert second["template"]["body"] == {"name": "Ana Souza"}

    stored = await bot.messages(cid)
    assert [m["status"] for m in stored] == ["sent"] * 4
    assert stored[0]["external_id"] == f"ext-{stored[0]['uuid']}"
    assert "template" not in stored[0] and "text" not in stored[2]  # recorded as sent
    first_run, second_run = await bot.runs(cid)
    assert first_run["status"] == second_run["status"] == "completed"
    assert [p[0] for p in first_run["path"]] == ["hello", "named"]
    assert (await bot.session(cid))["frames"] == []


# -- update_contact --------------------------------------------------------------------------


async def test_update_contact_name_language_fields_channel(bot: Bot) -> None:
    bot.write(
        "profile",
        """
        nodes:
          - id: update
            update_contact:
              name: "@(upper(contact.first_name)) Lima"
              language: por
              fields: {old_tier: "@fields.tier", tier: gold}
              channel: alt
            next: hello
          - id: hello
            send_message:
              text: "Hi @contact.name (@contact.language, @fields.tier) via @contact.channel"
        """,
    )
    cid = await bot.contact(fields={"tier": "silver", "keep": "me"})
    await bot.start(cid, "profile")
    await bot.drain()

    contact = await bot.get_contact(cid)
    assert contact["name"] == "ANA Lima"
    assert contact["language"] == "por"
    assert contact["fields"] == {"tier": "gold", "old_tier": "silver", "keep": "me"}
    assert contact["channel"] == "alt"
    assert bot.channels["cap"].sent == []
    (msg,) = bot.channels["alt"].sent
    assert msg["text"] == "Hi ANA Lima (por, gold) via alt"
    assert msg["channel"] == "alt"


@pytest.mark.parametrize("status", ["opted_out", "blocked"])
async def test_non_active_contact_sends_fail(bot: Bot, status: str) -> None:
    bot.write(
        "optout",
        f"""
        nodes:
          - id: stop
            update_contact: {{status: {status}}}
            next: bye
          - id: bye
            send_message: {{text: "bye"}}
            on_failure: noted
          - id: noted
            set_result: {{name: skipped, value: "yes"}}
        """,
    )
    cid = await bot.contact()
    await bot.start(cid, "optout")
    await bot.drain()

    assert (await bot.get_contact(cid))["status"] == status
    assert bot.channel.sent == []  # nothing reached a channel
    (msg,) = await bot.messages(cid)
    assert msg["status"] == "failed"
    assert msg["error"] == {"code": f"contact_{status}"}
    (run,) = await bot.runs(cid)
    assert run["status"] == "completed"
    assert [p[0] for p in run["path"]] == ["stop", "bye", "noted"]
    assert run["results"]["skipped"]["value"] == "yes"
    assert [e["code"] for e in run["errors"]] == [f"contact_{status}"]
    assert await bot.redis.llen(f"{{c:{cid}}}:outbox") == 0


# -- wait_for_reply ----------------------------------------------------------------------------

SURVEY = """
nodes:
  - id: ask
    wait_for_reply:
      result: rating
      cases:
        - {has_number_between: [1, 5], category: Valid, next: thanks}
        - {has_any_word: [stop, quit], category: Stop, next: bye}
      other: {category: Other, next: again}
  - id: again
    send_message: {text: "1 to 5 please"}
    next: ask
  - id: thanks
    send_message:
      text: "Got @results.rating.value (@results.rating.category) from @input.text"
  - id: bye
    send_message: {text: "bye"}
"""


async def test_wait_for_reply_cases_other_and_result(bot: Bot) -> None:
    bot.write("survey", SURVEY)
    cid = await bot.contact()
    await bot.start(cid, "survey")
    await bot.drain()
    session = await bot.session(cid)
    assert session["wait"]["node"] == "ask"
    assert session["frames"][0]["run"]["status"] == "waiting"
    assert bot.channel.sent == []

    await bot.reply(cid, "great")
    await bot.drain()
    assert bot.channel.texts == ["1 to 5 please"]
    session = await bot.session(cid)
    assert session["frames"][0]["run"]["results"]["rating"] == {
        "value": "great",
        "category": "Other",
        "node": "ask",
        "at": bot.clock.now(),
        "input": "great",
    }

    await bot.reply(cid, "I'd say 4 stars")
    await bot.drain()
    assert bot.channel.texts == ["1 to 5 please", "Got 4 (Valid) from I'd say 4 stars"]
    (run,) = await bot.runs(cid)
    assert run["status"] == "completed"
    assert run["results"]["rating"]["value"] == "4"
    assert [p[0] for p in run["path"]] == ["ask", "again", "ask", "thanks"]
    incoming = await bot.messages(cid, "in")
    assert [(m["text"], m["status"], m["run"]) for m in incoming] == [
        ("great", "handled", run["uuid"]),
        ("I'd say 4 stars", "handled", run["uuid"]),
    ]
    # the run is over: a later reply is recorded but handled by nothing
    await bot.reply(cid, "5")
    await bot.drain()
    assert (await bot.messages(cid, "in"))[-1]["status"] == "received"
    assert len(bot.channel.sent) == 2


async def test_wait_for_reply_second_case(bot: Bot) -> None:
    bot.write("survey", SURVEY)
    cid = await bot.contact()
    await bot.start(cid, "survey")
    await bot.reply(cid, "STOP please")
    await bot.drain()
    assert bot.channel.texts == ["bye"]
    (run,) = await bot.runs(cid)
    assert run["results"]["rating"]["category"] == "Stop"


# -- split -------------------------------------------------------------------------------------


async def test_split_on_fields_and_results(bot: Bot) -> None:
    bot.write(
        "tiers",
        """
        nodes:
          - id: by_tier
            split:
              on: "@fields.tier"
              result: tier
              cases:
                - {has_any_word: [gold], category: Gold, next: gold}
                - {has_any_word: [silver], category: Silver, next: silver}
              other: {category: Basic, next: basic}
          - id: gold
            set_result: {name: pick, value: "g", category: Premium}
            next: by_result
          - id: silver
            set_result: {name: pick, value: "s", category: Premium}
            next: by_result
          - id: basic
            set_result: {name: pick, value: "b", category: Plain}
            next: by_result
          - id: by_result
            split:
              on: "@results.pick.category"
              cases:
                - {has_only_phrase: [premium], category: P, next: vip}
            next: plain
          - id: vip
            send_message: {text: "vip @results.tier.category/@results.pick.value"}
          - id: plain
            send_message: {text: "plain @results.tier.category/@results.pick.value"}
        """,
    )
    expected = {"gold": "vip Gold/g", "silver": "vip Silver/s", "": "plain Basic/b"}
    cids = {}
    for i, tier in enumerate(expected):
        cids[tier] = await bot.contact(f"tel:+1555000{i}", fields={"tier": tier} if tier else {})
        await bot.start(cids[tier], "tiers")
    await bot.drain()
    for tier, text in expected.items():
        assert await bot.texts(cids[tier]) == [text]
    (run,) = await bot.runs(cids[""])
    assert run["results"]["tier"]["category"] == "Basic"
    assert [p[0] for p in run["path"]] == ["by_tier", "basic", "by_result", "plain"]


# -- call_webhook ------------------------------------------------------------------------------


class OrderService:
    """A small HTTP service on loopback, counting the calls it gets."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, str]] = []
        app = web.Application()
        app.router.add_route("*", "/order/{id}", self.order)
        app.router.add_route("*", "/broken", self.broken)
        app.router.add_route("*", "/slow", self.slow)
        self.app = app

    async def order(self, request: web.Request) -> web.Response:
        body = await request.text()
        self.calls.append((request.method, request.path, request.headers.get("X-Key", ""), body))
        return web.json_response({"status": "shipped", "eta": {"days": 3}})

    async def broken(self, request: web.Request) -> web.Response:
        self.calls.append((request.method, request.path, "", ""))
        return web.json_response({"error": "boom"}, status=500)

    async def slow(self, request: web.Request) -> web.Response:
        self.calls.append((request.method, request.path, "", ""))
        await asyncio.sleep(10)
        return web.json_response({})


WEBHOOK_FLOW = """
nodes:
  - id: call
    call_webhook:
      method: POST
      url: "{url}"
      headers: {{X-Key: "k-@fields.order_id"}}
      body: '{{"order": "@fields.order_id"}}'
      timeout: 1s
      result: api
    next: ok
    on_failure: failed
  - id: ok
    send_message: {{text: "Order @fields.order_id is @webhook.status, @webhook.eta.days days"}}
  - id: failed
    send_message: {{text: "Sorry (@results.api.value @results.api.category)"}}
"""


async def _webhook_run(bot: Bot, server: TestServer, path: str) -> str:
    bot.write("hook", WEBHOOK_FLOW.format(url=f"http://127.0.0.1:{server.port}{path}"))
    cid = await bot.contact(fields={"order_id": "A-9"})
    await bot.start(cid, "hook")
    await bot.drain()
    return cid


async def test_call_webhook_success_feeds_next_message(
    bot: Bot, aiohttp_server: AiohttpServer
) -> None:
    api = OrderService()
    server = await aiohttp_server(api.app)
    cid = await _webhook_run(bot, server, "/order/@fields.order_id")
    assert api.calls == [("POST", "/order/A-9", "k-A-9", '{"order": "A-9"}')]
    assert bot.channel.texts == ["Order A-9 is shipped, 3 days"]
    (run,) = await bot.runs(cid)
    assert run["status"] == "completed"
    assert run["webhook"] == {"status": "shipped", "eta": {"days": 3}}
    assert run["results"]["api"]["value"] == "200"
    assert run["results"]["api"]["category"] == "Success"


async def test_call_webhook_500_takes_on_failure(bot: Bot, aiohttp_server: AiohttpServer) -> None:
    api = OrderService()
    server = await aiohttp_server(api.app)
    cid = await _webhook_run(bot, server, "/broken")
    assert len(api.calls) == 1
    assert bot.channel.texts == ["Sorry (500 Failure)"]
    (run,) = await bot.runs(cid)
    assert [p[0] for p in run["path"]] == ["call", "failed"]


async def test_call_webhook_timeout_takes_on_failure(
    bot: Bot, aiohttp_server: AiohttpServer
) -> None:
    api = OrderService()
    server = await aiohttp_server(api.app)
    cid = await _webhook_run(bot, server, "/slow")
    assert len(api.calls) == 1
    assert bot.channel.texts == ["Sorry (0 Failure)"]  # no HTTP answer: status 0
    (run,) = await bot.runs(cid)
    assert run["results"]["api"]["category"] == "Failure"
    assert run["webhook"] is None


async def test_call_webhook_refuses_private_address(
    redis: Redis, tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    api = OrderService()
    server = await aiohttp_server(api.app)
    guarded = await Bot(
        redis, tmp_path / "flows", webhooks=WebhookCaller(allow_private=False)
    ).setup()
    try:
        await _webhook_run(guarded, server, "/order/1")
    finally:
        await guarded.close()
    assert api.calls == []  # never connected
    assert guarded.channel.texts == ["Sorry (0 Failure)"]


# -- set_result, groups --------------------------------------------------------------------------


async def test_set_result_and_groups(bot: Bot) -> None:
    bot.write(
        "groups",
        """
        nodes:
          - id: score
            set_result: {name: score, value: "@(length(contact.name) * 2)", category: Computed}
            next: join
          - id: join
            add_to_group: [VIP, Beta, Old]
            next: leave
          - id: leave
            remove_from_group: Old
            next: rejoin
          - id: rejoin
            add_to_group: {groups: [VIP]}
            next: say
          - id: say
            send_message: {text: "@results.score.value @results.score.category"}
        """,
    )
    cid = await bot.contact(groups=["Old", "Customers"])
    await bot.start(cid, "groups")
    await bot.drain()
    assert (await bot.get_contact(cid))["groups"] == ["Customers", "VIP", "Beta"]
    assert bot.channel.texts == ["18 Computed"]
    (run,) = await bot.runs(cid)
    assert run["results"]["score"]["value"] == "18"
    assert run["results"]["score"]["node"] == "score"


# -- enter_flow ----------------------------------------------------------------------------------


async def test_enter_flow_child_waits_then_parent_continues(bot: Bot) -> None:
    bot.write(
        "child",
        """
        nodes:
          - id: q
            send_message: {text: "child asks (@trigger.params.order)"}
            next: a
          - id: a
            wait_for_reply: {result: answer}
            next: done
          - id: done
            send_message: {text: "child got @results.answer.value"}
        """,
        reload=False,
    )
    bot.write(
        "parent",
        """
        nodes:
          - id: hi
            send_message: {text: "parent hi"}
            next: sub
          - id: sub
            enter_flow: child
            next: after
          - id: after
            send_message: {text: "parent again, answer=[@results.answer.value]"}
        """,
    )
    cid = await bot.contact()
    await bot.start(cid, "parent", {"order": "A-1"})
    await bot.drain()
    assert bot.channel.texts == ["parent hi", "child asks (A-1)"]
    session = await bot.session(cid)
    assert [f["flow"] for f in session["frames"]] == ["parent", "child"]
    assert [f["node"] for f in session["frames"]] == ["sub", "a"]
    parent_uuid = session["frames"][0]["run"]["uuid"]
    assert session["frames"][1]["run"]["parent"] == parent_uuid
    assert await bot.runs(cid) == []

    await bot.reply(cid, "42")
    await bot.drain()
    assert bot.channel.texts == [
        "parent hi",
        "child asks (A-1)",
        "child got 42",
        "parent again, answer=[]",  # results belong to the run that saved them
    ]
    parent, child = await bot.runs(cid)  # in order of creation
    assert (child["flow"], child["status"], child["parent"]) == ("child", "completed", parent_uuid)
    assert (parent["flow"], parent["status"]) == ("parent", "completed")
    assert [p[0] for p in parent["path"]] == ["hi", "sub", "after"]
    assert (await bot.session(cid))["frames"] == []
    assert await bot.timers() == []


async def test_webhook_guard_checks_the_addresses_it_connects_to(
    aiohttp_server: AiohttpServer,
) -> None:
    """A host name goes through the connector's resolver, which refuses private addresses:
    the check is made on the addresses used for the connection (no DNS rebinding window)."""
    api = OrderService()
    server = await aiohttp_server(api.app)
    caller = WebhookCaller(allow_private=False)
    try:
        answer = await caller.call(
            {"url": f"http://localhost:{server.port}/order/1", "method": "GET", "timeout": 5}
        )
    finally:
        await caller.close()
    assert answer["status"] == 0
    assert "non-public address" in answer["error"]
    assert api.calls == []
