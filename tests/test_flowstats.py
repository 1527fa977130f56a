"""A flow's counters and run index, kept by the commit: what the engine counts for each event,
and that deleting a contact or trimming its history takes its runs out of the index."""

from __future__ import annotations

from typing import Any

import pytest

from bot.engine import stats as flowstats
from bot.store import dumps
from bot.store import work as store_module
from bot.store.keys import OPEN, flow_runs_key, flow_stats_key
from tests.support.harness import Bot, MakeBot

SURVEY = """
expire_after: 2h
nodes:
  - id: hello
    send_message: {text: "Hi"}
    next: ask
  - id: ask
    wait_for_reply:
      result: answer
      timeout: 10m
      on_timeout: {category: Silent, next: nudge}
      cases:
        - {has_any_word: [yes, si], category: "Yes", next: thanks}
      other: {category: Other, next: ask}
  - id: nudge
    send_message: {text: "still there?"}
    next: ask
  - id: thanks
    send_message: {text: "Thanks"}
"""


@pytest.fixture
async def bot(make_bot: MakeBot) -> Bot:
    b = await make_bot()
    b.write("survey", SURVEY)
    return b


async def stats(bot: Bot, flow: str = "survey") -> dict[str, Any]:
    counters, open_runs = await bot.store.flow_counters(flow)
    return flowstats.present(flow, bot.registry.flows.get(flow), counters, open_runs)


def node(doc: dict[str, Any], node_id: str) -> dict[str, Any]:
    found: dict[str, Any] = next(n for n in doc["nodes"] if n["id"] == node_id)
    return found


def exit_counts(doc: dict[str, Any], node_id: str) -> dict[str, int]:
    return {e["exit"]: e["count"] for e in node(doc, node_id)["exits"]}


async def members(bot: Bot, flow: str, state: str) -> list[str]:
    return [m.decode() for m in await bot.redis.zrange(flow_runs_key(flow, state), 0, -1)]


async def test_counts_follow_waits_exits_results_and_endings(bot: Bot) -> None:
    a = await bot.contact("tel:+15550001")
    b = await bot.contact("tel:+15550002")
    c = await bot.contact("tel:+15550003")
    for cid in (a, b, c):
        await bot.start(cid, "survey")
    await bot.drain()
    doc = await stats(bot)
    assert doc["runs"] == {
        "started": 3,
        "active": 3,
        "waiting": 3,
        "completed": 0,
        "expired": 0,
        "interrupted": 0,
        "failed": 0,
    }
    assert node(doc, "ask")["waiting"] == 3
    assert exit_counts(doc, "hello") == {"next": 3, "failure": 0}

    await bot.reply(a, "maybe later")  # other -> ask again: still waiting, result Other
    await bot.drain()
    assert (await stats(bot))["results"] == {"answer": {"Other": 1}}
    await bot.reply(a, "yes")  # the latest category of a run replaces its earlier one
    await bot.reply(b, "si")
    await bot.drain()
    await bot.fire(11 * 60)  # c times out -> nudge -> waits again
    await bot.drain()

    doc = await stats(bot)
    assert doc["runs"]["completed"] == 2 and doc["runs"]["active"] == 1
    assert node(doc, "ask")["waiting"] == 1 and doc["runs"]["waiting"] == 1
    assert exit_counts(doc, "ask") == {"case0": 2, "other": 1, "timeout": 1}
    assert exit_counts(doc, "nudge") == {"next": 1, "failure": 0}
    assert exit_counts(doc, "thanks") == {"next": 2, "failure": 0}
    assert doc["results"] == {"answer": {"Yes": 2, "Silent": 1}}
    labels = {e["exit"]: (e.get("category"), e["to"]) for e in node(doc, "ask")["exits"]}
    assert labels == {
        "case0": ("Yes", "thanks"),
        "other": ("Other", "ask"),
        "timeout": ("Silent", "nudge"),
    }
    assert len(await members(bot, "survey", OPEN)) == 1
    assert len(await members(bot, "survey", "completed")) == 2


async def test_expiry_ends_the_wait_and_moves_the_run(bot: Bot) -> None:
    bot.write("quiet", "expire_after: 1h\nnodes: [{id: q, wait_for_reply: {}}]\n")
    cid = await bot.contact()
    await bot.start(cid, "quiet")
    await bot.drain()
    assert node(await stats(bot, "quiet"), "q")["waiting"] == 1
    await bot.fire(3601)
    await bot.drain()
    doc = await stats(bot, "quiet")
    assert doc["runs"]["expired"] == 1 and doc["runs"]["active"] == 0
    assert node(doc, "q")["waiting"] == 0
    assert exit_counts(doc, "q") == {"other": 0}  # an expiry is no exit
    assert await members(bot, "quiet", OPEN) == []
    assert len(await members(bot, "quiet", "expired")) == 1


async def test_restart_interrupts_and_the_index_moves_the_run(bot: Bot) -> None:
    cid = await bot.contact()
    await bot.start(cid, "survey")
    await bot.drain()
    [first] = await members(bot, "survey", OPEN)
    await bot.start(cid, "survey")
    await bot.drain()
    assert await members(bot, "survey", "interrupted") == [first]
    [second] = await members(bot, "survey", OPEN)
    assert second != first and second.endswith((await bot.session(cid))["wait"]["run"])
    doc = await stats(bot)
    assert doc["runs"]["interrupted"] == 1 and doc["runs"]["started"] == 2
    assert node(doc, "ask")["waiting"] == 1  # the interrupted wait was taken off


async def test_failure_exit_and_subflow_exits_are_counted(bot: Bot) -> None:
    bot.write(
        "child",
        """
        nodes:
          - id: q
            wait_for_reply: {other: {category: Any}}
        """,
    )
    bot.write(
        "parent",
        """
        nodes:
          - id: sub
            enter_flow: child
            next: tell
          - id: tell
            send_message: {text: "boom"}
            on_failure: sorry
            next: wait
          - id: wait
            wait_for_reply: {other: {category: Any}}
          - id: sorry
            send_message: {text: "sorry"}
        """,
    )
    bot.channel.fail["boom"] = "provider_error"
    cid = await bot.contact()
    await bot.start(cid, "parent")
    await bot.drain()
    assert node(await stats(bot, "child"), "q")["waiting"] == 1
    assert node(await stats(bot, "parent"), "wait").get("waiting") == 0
    await bot.reply(cid, "ok")
    await bot.drain()
    child, parent = await stats(bot, "child"), await stats(bot, "parent")
    assert exit_counts(child, "q") == {"other": 1} and child["runs"]["completed"] == 1
    assert exit_counts(parent, "sub") == {"next": 1, "failure": 0}
    # "boom" failed after it was handed over: the wait took tell's on_failure
    assert exit_counts(parent, "tell") == {"next": 1, "failure": 1}
    assert exit_counts(parent, "sorry") == {"next": 1, "failure": 0}
    assert parent["runs"]["completed"] == 1 and parent["runs"]["active"] == 0


async def test_deleting_a_contact_takes_its_runs_out(bot: Bot) -> None:
    keep, gone = await bot.contact("tel:+15550001"), await bot.contact("tel:+15550002")
    for cid in (keep, gone, gone):  # gone: one interrupted run, one waiting
        await bot.start(cid, "survey")
        await bot.drain()
    assert len(await members(bot, "survey", OPEN)) == 2
    assert await bot.store.delete_contact(gone)
    assert [m.split("|")[1] for m in await members(bot, "survey", OPEN)] == [keep]
    assert await members(bot, "survey", "interrupted") == []
    doc = await stats(bot)
    assert node(doc, "ask")["waiting"] == 1 and doc["runs"]["active"] == 1
    assert doc["runs"]["interrupted"] == 1  # totals keep what happened


async def test_trimmed_runs_leave_the_index(bot: Bot, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "RUNS_KEPT", 3)
    bot.write("once", "nodes: [{id: hi, send_message: {text: hi}}]\n")
    cid = await bot.contact()
    for _ in range(5):
        await bot.start(cid, "once")
        await bot.drain()
        bot.clock.advance(1.234)  # distinct creation times, with milliseconds
    kept = [run["uuid"] for run in await bot.store.ended_runs(cid, limit=10)]
    assert len(kept) == 3
    indexed = await members(bot, "once", "completed")
    assert sorted(m.split("|")[2] for m in indexed) == sorted(kept)
    assert await members(bot, "once", OPEN) == []  # begun and ended in one commit
    assert (await stats(bot, "once"))["runs"]["completed"] == 5


async def test_a_wait_stored_before_stats_is_not_uncounted(bot: Bot) -> None:
    cid = await bot.contact()
    await bot.start(cid, "survey")
    await bot.drain()
    # a session written by a version without flow stats: its wait names no flow
    session = await bot.session(cid)
    del session["wait"]["flow"]
    await bot.redis.set(f"{{c:{cid}}}:session", dumps(session))
    await bot.redis.hset(flow_stats_key("survey"), "wait:ask", 0)
    await bot.reply(cid, "yes")
    await bot.drain()
    assert node(await stats(bot), "ask")["waiting"] == 0
    assert await bot.redis.hget(flow_stats_key("survey"), "wait:ask") == b"0"


async def test_a_send_failure_without_on_failure_counts_the_exit_and_the_failed_run(
    bot: Bot,
) -> None:
    bot.write(
        "hi",
        "nodes:\n"
        "  - {id: hi, send_message: {text: hi}, next: q}\n"
        "  - {id: q, wait_for_reply: {}}\n",
    )
    bot.channel.fail["hi"] = "x"
    cid = await bot.contact()
    await bot.start(cid, "hi")
    await bot.drain()
    doc = await stats(bot, "hi")
    assert doc["runs"]["failed"] == 1 and doc["runs"]["active"] == 0
    assert exit_counts(doc, "hi") == {"next": 1, "failure": 1}  # sent (next), then failed
    assert node(doc, "q")["waiting"] == 0
    assert await members(bot, "hi", OPEN) == []
    assert len(await members(bot, "hi", "failed")) == 1
