"""Engine behaviour through the real worker: routing, timers, interrupts, loop guards, versions."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio import Redis

from bot.engine.sprint import Limits
from bot.flow.files import FlowError, parse_flow
from tests.support.harness import Bot, MakeBot


@pytest.fixture
async def bot(make_bot: MakeBot) -> Bot:
    return await make_bot()


# -- routing -----------------------------------------------------------------------------------

SEND_THEN_WAIT = """
nodes:
  - id: hello
    send_message: {text: "hello"}
    next: ask
    on_failure: fallback
  - id: ask
    wait_for_reply: {}
    next: thanks
  - id: fallback
    set_result: {name: reached, value: "no"}
    next: ask
  - id: thanks
    send_message: {text: "thanks"}
"""


SEND_NO_FALLBACK = """
nodes:
  - id: hello
    send_message: {text: "hello"}
    next: ask
  - id: ask
    wait_for_reply: {}
"""


async def test_no_route_fails_the_message_and_takes_on_failure(bot: Bot) -> None:
    bot.write("greet", SEND_THEN_WAIT)
    cid = await bot.contact("fb:1234")  # no channel serves "fb"
    await bot.start(cid, "greet")
    await bot.drain()

    assert bot.channel.sent == []
    (msg,) = await bot.messages(cid)
    assert (msg["status"], msg["error"], msg["channel"], msg["urn"]) == (
        "failed",
        {"code": "no_route"},
        None,
        None,
    )
    (frame,) = (await bot.session(cid))["frames"]
    assert [p[0] for p in frame["run"]["path"]] == ["hello", "fallback", "ask"]
    assert frame["run"]["results"]["reached"]["value"] == "no"
    assert [e["code"] for e in frame["run"]["errors"]] == ["no_route"]
    assert await bot.redis.xlen("chasqui:sendq") == 0  # nothing was put in an outbox


async def test_async_send_failure_takes_on_failure_while_waiting(bot: Bot) -> None:
    bot.write("greet", SEND_THEN_WAIT)
    bot.channel.fail["hello"] = "x"
    cid = await bot.contact()
    await bot.start(cid, "greet")
    await bot.drain()

    hello = (await bot.messages(cid))[0]
    assert hello["status"] == "failed"
    assert hello["error"] == {"code": "x"}
    (frame,) = (await bot.session(cid))["frames"]
    run = frame["run"]
    # hello -> ask (waiting), then the failure event moved the run to fallback and back to ask
    assert [p[0] for p in run["path"]] == ["hello", "ask", "fallback", "ask"]
    assert [(e["node"], e["code"]) for e in run["errors"]] == [("hello", "x")]
    assert run["results"]["reached"]["value"] == "no"
    assert (await bot.session(cid))["wait"]["node"] == "ask"
    # exactly one timer pair: the first wait's were dropped when the failure moved the run
    timers = await bot.timers()
    assert len(timers) == 1 and timers[0].startswith(f"{cid}|expire|")

    await bot.reply(cid, "ok")
    await bot.drain()
    assert bot.channel.texts == ["hello", "thanks"]


async def test_async_send_failure_without_on_failure_fails_the_run(bot: Bot) -> None:
    bot.write("greet", SEND_NO_FALLBACK)
    bot.channel.fail["hello"] = "window_closed"
    cid = await bot.contact()
    await bot.start(cid, "greet")
    await bot.drain()
    # the contact never got the question: the run does not wait for an answer to it
    session = await bot.session(cid)
    assert session.get("frames") == [] and session.get("wait") is None
    assert await bot.timers() == []
    (run,) = await bot.runs(cid)
    assert run["status"] == "failed"
    assert [p[0] for p in run["path"]] == ["hello", "ask"]
    assert [(e["node"], e["code"]) for e in run["errors"]] == [
        ("hello", "window_closed"),
        ("hello", "failed"),
    ]
    assert run["errors"][-1]["message"] == "message at 'hello' not sent: window_closed"


async def test_refused_send_without_on_failure_fails_the_run(bot: Bot) -> None:
    bot.write("greet", SEND_NO_FALLBACK)
    cid = await bot.contact("fb:1234")  # no channel serves "fb": refused before any send
    await bot.start(cid, "greet")
    await bot.drain()
    assert (await bot.session(cid)).get("wait") is None
    (run,) = await bot.runs(cid)
    assert run["status"] == "failed"
    assert [p[0] for p in run["path"]] == ["hello"]  # it never reached the question
    assert run["errors"][-1]["message"] == "message at 'hello' not sent: no_route"


CHILD_SENDS = """
nodes:
  - id: child
    enter_flow: greet
    on_failure: noted
  - id: noted
    set_result: {name: child, value: failed}
"""


async def test_a_child_run_whose_send_failed_fails_and_the_parent_takes_on_failure(
    bot: Bot,
) -> None:
    bot.write("greet", SEND_NO_FALLBACK)
    bot.write("parent", CHILD_SENDS)
    cid = await bot.contact("fb:1234")
    await bot.start(cid, "parent")
    await bot.drain()
    child, parent = sorted(await bot.runs(cid), key=lambda r: r["flow"])
    assert (child["flow"], child["status"]) == ("greet", "failed")
    assert (parent["flow"], parent["status"]) == ("parent", "completed")
    assert parent["results"]["child"]["value"] == "failed"


# -- timeout, expiry, interrupt ----------------------------------------------------------------

TIMED = """
expire_after: 2h
nodes:
  - id: ask
    wait_for_reply:
      result: answer
      timeout: 10m
      on_timeout: {category: Silent, next: nudge}
      other: {category: Any, next: thanks}
  - id: nudge
    send_message: {text: "still there?"}
    next: ask
  - id: thanks
    send_message: {text: "thanks @results.answer.category"}
"""


async def test_timeout_fires_after_clock_advance(bot: Bot) -> None:
    bot.write("timed", TIMED)
    cid = await bot.contact()
    await bot.start(cid, "timed")
    await bot.drain()
    assert await bot.fire(599) == 0
    await bot.drain()
    assert bot.channel.sent == []

    assert await bot.fire(1) == 1
    await bot.drain()
    assert bot.channel.texts == ["still there?"]
    session = await bot.session(cid)
    run = session["frames"][0]["run"]
    assert run["results"]["answer"]["category"] == "Silent"
    assert [p[0] for p in run["path"]] == ["ask", "nudge", "ask"]
    # the new wait has its own timer (the timeout: it comes before the expiry), the old is gone
    token = session["wait"]["token"]
    assert await bot.timers() == [f"{cid}|timeout|{token}"]

    await bot.fire(600)
    await bot.drain()
    assert bot.channel.texts == ["still there?", "still there?"]


async def test_stale_timer_after_reply_is_ignored(bot: Bot) -> None:
    bot.write(
        "timed",
        TIMED.replace(
            '{text: "thanks @results.answer.category"}', '{text: "again"}\n    next: ask'
        ),
    )
    cid = await bot.contact()
    await bot.start(cid, "timed")
    await bot.drain()
    old = (await bot.session(cid))["wait"]["token"]

    await bot.reply(cid, "hi")
    await bot.drain()
    assert bot.channel.texts == ["again"]
    session = await bot.session(cid)
    assert session["wait"]["token"] != old
    assert not [t for t in await bot.timers() if old in t]  # the reply dropped them

    # a timer that fired anyway (e.g. raced with the reply) changes nothing
    await bot.store.enqueue(cid, {"type": "timeout", "token": old, "at": bot.clock.now()})
    await bot.store.enqueue(cid, {"type": "expire", "token": old, "at": bot.clock.now()})
    await bot.drain()
    assert bot.channel.texts == ["again"]
    assert await bot.session(cid) == session
    assert await bot.runs(cid) == []


async def test_expiry_ends_the_run_and_later_replies_do_not_resume(bot: Bot) -> None:
    bot.write("timed", TIMED.replace("timeout: 10m", "timeout: 5h"))
    cid = await bot.contact()
    await bot.start(cid, "timed")
    await bot.drain()
    await bot.fire(2 * 3600)
    await bot.drain()

    (run,) = await bot.runs(cid)
    assert run["status"] == "expired"
    assert run["exited_on"] == bot.clock.now()
    session = await bot.session(cid)
    assert session["frames"] == [] and "wait" not in session
    assert await bot.timers() == []  # the 5h timeout went with the run

    await bot.reply(cid, "sorry, late")
    await bot.drain()
    await bot.fire(5 * 3600)
    await bot.drain()
    assert bot.channel.sent == []
    assert [m["status"] for m in await bot.messages(cid, "in")] == ["received"]
    assert len(await bot.runs(cid)) == 1


async def test_starting_another_flow_interrupts_and_drops_timers(bot: Bot) -> None:
    bot.write("timed", TIMED)
    bot.write("other", "nodes:\n  - id: hi\n    send_message: {text: hi}\n")
    cid = await bot.contact()
    await bot.start(cid, "timed")
    await bot.drain()
    old = (await bot.session(cid))["frames"][0]["run"]["uuid"]
    assert len(await bot.timers()) == 1

    await bot.start(cid, "other")
    await bot.drain()
    first, second = await bot.runs(cid)
    assert (first["uuid"], first["flow"], first["status"]) == (old, "timed", "interrupted")
    assert first["errors"][-1]["message"] == "started in other"
    assert (second["flow"], second["status"]) == ("other", "completed")
    assert await bot.timers() == []
    await bot.fire(3 * 3600)
    await bot.drain()
    assert bot.channel.texts == ["hi"]


async def test_interrupt_event_ends_the_waiting_run(bot: Bot) -> None:
    bot.write("timed", TIMED)
    cid = await bot.contact()
    await bot.start(cid, "timed")
    await bot.drain()
    await bot.store.enqueue(
        cid, {"type": "interrupt", "reason": "agent took over", "at": bot.clock.now()}
    )
    await bot.drain()
    (run,) = await bot.runs(cid)
    assert run["status"] == "interrupted"
    assert run["errors"][-1]["message"] == "agent took over"
    assert await bot.timers() == []
    await bot.reply(cid, "hello?")
    await bot.drain()
    assert bot.channel.sent == []


# -- loop guards ---------------------------------------------------------------------------------


def test_wait_free_cycle_cannot_be_loaded(tmp_path: Path) -> None:
    text = b"""
nodes:
  - id: a
    send_message: {text: "a"}
    next: b
  - id: b
    split: {on: "@fields.x", cases: [{has_text: true, category: X, next: a}]}
    next: a
"""
    with pytest.raises(FlowError) as err:
        parse_flow(tmp_path / "spin.yaml", text)
    (problem,) = err.value.problems
    assert "cycle with no wait_for_reply: a -> b -> a" in problem.message


async def test_step_cap_fails_the_run(redis: Redis, tmp_path: Path) -> None:
    bot = await Bot(redis, tmp_path / "flows", limits=Limits(max_steps=10)).setup()
    try:
        nodes = "\n".join(
            f"  - id: n{i}\n    set_result: {{name: r{i}, value: v}}\n    next: n{i + 1}"
            for i in range(12)
        )
        bot.write("long", f"nodes:\n{nodes}\n  - id: n12\n    send_message: {{text: end}}\n")
        cid = await bot.contact()
        await bot.start(cid, "long")
        await bot.drain()
        (run,) = await bot.runs(cid)
        assert run["status"] == "failed"
        assert run["errors"][-1]["message"] == "more than 10 steps for one event"
        assert len(run["path"]) == 11
        assert bot.channel.sent == []
        assert (await bot.session(cid))["frames"] == []
    finally:
        await bot.close()


LOOPY = """
nodes:
  - id: ask
    wait_for_reply: {}
    next: again
  - id: again
    send_message: {text: "Sorry, say it again"}
    next: ask
"""


async def test_same_text_twenty_times_fails_the_run(bot: Bot) -> None:
    bot.write("loopy", LOOPY)
    cid = await bot.contact()
    await bot.start(cid, "loopy")
    for i in range(25):
        bot.clock.advance(5)  # 25 replies within two minutes
        await bot.reply(cid, f"what {i}")
    await bot.drain()
    assert bot.channel.texts == ["Sorry, say it again"] * 19
    (run,) = await bot.runs(cid)
    assert run["status"] == "failed"
    assert run["errors"][-1]["message"] == "the same message 20 times in 300s"
    incoming = await bot.messages(cid, "in")
    assert [m["status"] for m in incoming] == ["handled"] * 20 + ["received"] * 5


async def test_same_text_spread_over_time_is_fine(bot: Bot) -> None:
    bot.write("loopy", LOOPY)
    cid = await bot.contact()
    await bot.start(cid, "loopy")
    for i in range(40):
        bot.clock.advance(20)  # 15 per 300 s window: under the guard
        await bot.reply(cid, f"what {i}")
        await bot.drain()
    assert len(bot.channel.sent) == 40
    assert await bot.runs(cid) == []


# -- versions ------------------------------------------------------------------------------------

V1 = """
nodes:
  - id: hello
    send_message: {text: "v1 hello"}
    next: ask
  - id: ask
    wait_for_reply: {}
    next: bye
  - id: bye
    send_message: {text: "v1 bye"}
"""


async def test_new_version_keeping_the_node_continues(bot: Bot) -> None:
    bot.write("ver", V1)
    v1 = bot.registry.flows["ver"].version
    cid = await bot.contact()
    await bot.start(cid, "ver")
    await bot.drain()

    report = bot.write("ver", V1.replace("v1 bye", "v2 bye"))
    assert report is not None and report.loaded == ["ver"]
    v2 = bot.registry.flows["ver"].version
    assert v2 != v1
    assert (await bot.session(cid))["frames"][0]["run"]["version"] == v1

    await bot.reply(cid, "yo")
    await bot.drain()
    assert bot.channel.texts == ["v1 hello", "v2 bye"]
    (run,) = await bot.runs(cid)
    assert (run["status"], run["version"]) == ("completed", v2)


async def test_new_version_without_the_node_interrupts(bot: Bot) -> None:
    bot.write("ver", V1)
    cid = await bot.contact()
    await bot.start(cid, "ver")
    await bot.drain()
    bot.write("ver", V1.replace("ask", "question"))
    v2 = bot.registry.flows["ver"].version

    await bot.reply(cid, "yo")
    await bot.drain()
    assert bot.channel.texts == ["v1 hello"]
    (run,) = await bot.runs(cid)
    assert run["status"] == "interrupted"
    assert run["errors"][-1]["message"] == f"node 'ask' no longer exists in ver version {v2}"
    assert await bot.timers() == []
    assert [m["status"] for m in await bot.messages(cid, "in")] == ["received"]


async def test_removed_flow_interrupts_its_runs(bot: Bot) -> None:
    bot.write("ver", V1)
    bot.write("keep", "nodes:\n  - id: hi\n    send_message: {text: hi}\n")
    cid = await bot.contact()
    await bot.start(cid, "ver")
    await bot.drain()
    (bot.folder / "ver.yaml").unlink()
    assert bot.registry.reload().removed == ["ver"]
    await bot.reply(cid, "yo")
    await bot.drain()
    (run,) = await bot.runs(cid)
    assert run["status"] == "interrupted"
    assert run["errors"][-1]["message"] == "flow 'ver' no longer exists"


async def test_new_version_where_the_wait_became_another_kind_interrupts(bot: Bot) -> None:
    bot.write("ver", V1)
    cid = await bot.contact()
    await bot.start(cid, "ver")
    await bot.drain()
    bot.write("ver", V1.replace("wait_for_reply: {}", 'send_message: {text: "not a wait"}'))
    v2 = bot.registry.flows["ver"].version

    await bot.reply(cid, "yo")
    await bot.drain()  # used to crash the batch: SendMessage has no on_reply
    assert bot.channel.texts == ["v1 hello"]
    (run,) = await bot.runs(cid)
    assert run["status"] == "interrupted"
    assert run["errors"][-1]["message"] == f"node 'ask' is no longer a wait in ver version {v2}"
    assert await bot.queue_len(cid) == 0
    assert await bot.timers() == []


async def test_a_timeout_the_new_version_lacks_turns_into_the_expiry(bot: Bot) -> None:
    bot.write("timed", TIMED)
    cid = await bot.contact()
    await bot.start(cid, "timed")
    await bot.drain()
    token = (await bot.session(cid))["wait"]["token"]
    assert await bot.timers() == [f"{cid}|timeout|{token}"]
    # version 2: the same wait without a timeout
    bot.write(
        "timed",
        """
expire_after: 2h
nodes:
  - id: ask
    wait_for_reply: {result: answer, other: {category: Any, next: thanks}}
  - id: thanks
    send_message: {text: "thanks"}
""",
    )
    assert await bot.fire(600) == 1
    await bot.drain()
    session = await bot.session(cid)
    assert session["wait"]["token"] == token and session["wait"]["timer"] == "expire"
    assert await bot.timers() == [f"{cid}|expire|{token}"]  # still waiting, not forever
    assert bot.channel.texts == []
    await bot.fire(2 * 3600)
    await bot.drain()
    (run,) = await bot.runs(cid)
    assert run["status"] == "expired"
