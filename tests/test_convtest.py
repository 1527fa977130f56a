"""Conversation tests: the shipped ones pass, and the runner really fails when it should."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from bot.cli.main import main
from bot.convtest import runner as convtest
from bot.convtest.cases import CaseFileError
from bot.convtest.runner import CaseResult, run_file
from bot.core.config import load_config
from channels.protocol import Capabilities, Channel, SendResult, UnknownChannelType

ROOT = Path(__file__).resolve().parent.parent
FLOWS = ROOT / "flows"
SHIPPED = sorted((FLOWS / "tests").glob("*.yaml"))

GREET = """\
name: Greet
nodes:
  - id: hello
    send_message:
      text: "Hello @contact.first_name!"
      template: {name: greeting, body: ["@contact.first_name"]}
    next: ask
  - id: ask
    wait_for_reply:
      result: mood
      timeout: 1h
      cases:
        - {has_any_word: [good, great], category: Good, next: glad}
      other: {category: Other, next: sorry}
      on_timeout: {category: Silent, next: nudge}
  - id: glad
    send_message: {text: "Glad to hear it."}
  - id: sorry
    send_message: {text: "Sorry to hear that."}
    next: tip
  - id: tip
    update_contact: {fields: {mood: low}}
    next: tip_message
  - id: tip_message
    send_message: {text: "Tomorrow will be better."}
  - id: nudge
    send_message: {text: "Still there?"}
    next: ask
"""

CONTACT = 'contact: {name: Ana Lima, urn: "tel:+5511900000001"}'
WA_CONTACT = 'contact: {name: Ana Lima, urn: "whatsapp:+5511900000001"}'


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    folder = tmp_path / "flows"
    (folder / "tests").mkdir(parents=True)
    (folder / "greet.yaml").write_text(GREET)
    return folder


async def run(flows: Path, valkey_url: str, text: str) -> list[CaseResult]:
    path = flows / "tests" / "greet.yaml"
    path.write_text(textwrap.dedent(text))
    return await run_file(path, flows, redis_url=valkey_url)


async def run_one(flows: Path, valkey_url: str, text: str) -> CaseResult:
    results = await run(flows, valkey_url, text)
    assert len(results) == 1
    return results[0]


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
async def test_shipped_conversation_tests_pass(path: Path, valkey_url: str) -> None:
    config = load_config(ROOT / "config.toml", environ={})
    results = await run_file(path, FLOWS, redis_url=valkey_url, config=config)
    assert len(results) >= 5
    failed = [r.report() for r in results if not r.passed]
    assert not failed, "\n".join(failed)


def test_every_shipped_flow_has_conversation_tests() -> None:
    tested = {p.stem for p in SHIPPED}
    assert {"order_followup", "newsletter_signup"} <= tested


async def test_a_matching_conversation_passes(flows: Path, valkey_url: str) -> None:
    result = await run_one(
        flows,
        valkey_url,
        f"""\
        flow: greet
        name: happy
        {WA_CONTACT}
        steps:
          - bot: {{template: greeting, body: [Ana]}}  # WhatsApp sends the template, not the text
          - user: "great, thanks"
          - bot: Glad to hear it.
        results: {{mood: {{category: Good, value: great}}}}
        status: completed
        """,
    )
    assert result.passed, result.report()
    assert result.report() == "PASS " + result.label
    assert result.label.endswith("greet.yaml#1 (happy)")
    assert result.expected == result.actual


# Conversations that must fail: (contact, steps, the whole expected diff: "- " expected and
# missing, "+ " happened but not expected, "  " matched).
FAILING = {
    "wrong_text": (
        CONTACT,
        ["bot: Hello Ana!", "user: great", "bot: Glad to hear that."],
        [
            "  bot: Hello Ana!",
            "  user: great",
            "- bot: Glad to hear that.",
            "+ bot: Glad to hear it.",
        ],
    ),
    "wrong_template_parameter": (
        WA_CONTACT,
        ["bot: {template: greeting, body: [Ana Lima]}"],
        [
            "- bot: {template: greeting, body: [Ana Lima]}",
            "+ bot: {template: greeting, body: [Ana]}",
        ],
    ),
    "missing_message": (
        CONTACT,
        ["bot: Hello Ana!", "user: good", "bot: Glad to hear it.", "bot: See you tomorrow."],
        [
            "  bot: Hello Ana!",
            "  user: good",
            "  bot: Glad to hear it.",
            "- bot: See you tomorrow.",
        ],
    ),
    "extra_message": (
        CONTACT,
        ["bot: Hello Ana!", "user: bad", "bot: Sorry to hear that."],
        [
            "  bot: Hello Ana!",
            "  user: bad",
            "  bot: Sorry to hear that.",
            "+ bot: Tomorrow will be better.",
        ],
    ),
    # messages must be expected where they happen, not just somewhere later
    "extra_message_before_a_reply": (
        CONTACT,
        ["user: great", "bot: Hello Ana!", "bot: Glad to hear it."],
        ["+ bot: Hello Ana!", "  user: great", "- bot: Hello Ana!", "  bot: Glad to hear it."],
    ),
    "wait_too_short_misses_the_timeout": (
        CONTACT,
        ["bot: Hello Ana!", "wait: 59m", "bot: Still there?"],
        ["  bot: Hello Ana!", "  wait: 59m", "- bot: Still there?"],
    ),
}


@pytest.mark.parametrize(("contact", "steps", "diff"), FAILING.values(), ids=FAILING.keys())
async def test_a_conversation_that_differs_fails_with_its_diff(
    flows: Path, valkey_url: str, contact: str, steps: list[str], diff: list[str]
) -> None:
    lines = "".join(f"  - {step}\n" for step in steps)
    result = await run_one(flows, valkey_url, f"flow: greet\n{contact}\nsteps:\n{lines}")
    assert not result.passed
    assert result.diff() == diff
    report = result.report().splitlines()
    assert report[0].startswith("FAIL ") and report[0].endswith("greet.yaml#1")
    assert report[1:] == ["  (- expected, + actual)", *(f"  {line}" for line in diff)]


async def test_wrong_result_and_status_fail_naming_both_values(
    flows: Path, valkey_url: str
) -> None:
    result = await run_one(
        flows,
        valkey_url,
        f"""\
        flow: greet
        {CONTACT}
        steps:
          - bot: Hello Ana!
          - user: meh
          - bot: Sorry to hear that.
          - bot: Tomorrow will be better.
        results: {{mood: Good, missing: Yes}}
        status: waiting
        contact_after: {{fields: {{mood: high}}}}
        """,
    )
    assert not result.passed
    assert result.diff() == []  # the transcript itself matched
    assert result.problems == [
        "results.mood: expected Good, got Other",
        "results.missing: expected Yes, got no such result (results: mood)",
        "status: expected waiting, got completed",
        "contact.fields.mood: expected high, got low",
    ]
    assert "  results.mood: expected Good, got Other" in result.report()


async def test_wait_fires_timers_at_their_due_time(flows: Path, valkey_url: str) -> None:
    # timeout 1h: after 59m nothing; each later hour brings one nudge (each wait re-arms it)
    result = await run_one(
        flows,
        valkey_url,
        f"""\
        flow: greet
        {CONTACT}
        steps:
          - bot: Hello Ana!
          - wait: 59m
          - wait: 1m
          - bot: Still there?
          - wait: 2h30m
          - bot: Still there?
          - bot: Still there?
        results: {{mood: Silent}}
        status: waiting
        """,
    )
    assert result.passed, result.report()


async def test_cases_are_isolated(flows: Path, valkey_url: str) -> None:
    """Same URN in two cases: the second starts with a fresh contact (no field left over)."""
    results = await run(
        flows,
        valkey_url,
        f"""\
        flow: greet
        {CONTACT}
        steps: [{{bot: Hello Ana!}}, {{user: bad}}, {{bot: Sorry to hear that.}},
                {{bot: Tomorrow will be better.}}]
        contact_after: {{fields: {{mood: low}}}}
        ---
        flow: greet
        {CONTACT}
        steps: [{{bot: Hello Ana!}}]
        contact_after: {{fields: {{mood: null}}}}
        status: waiting
        """,
    )
    assert [r.passed for r in results] == [True, True], [r.report() for r in results]


async def test_malformed_file_names_file_document_and_line(flows: Path, valkey_url: str) -> None:
    with pytest.raises(CaseFileError) as info:
        await run(
            flows,
            valkey_url,
            """\
            flow: greet
            steps:
              - bot: Hello!
              - usr: hi
            ---
            flow: grete
            steps:
              - wait: 24 hours
            """,
        )
    lines = [str(p) for p in info.value.problems]
    path = str(flows / "tests" / "greet.yaml")
    assert lines == [
        f"{path}:4: document 1: steps[1]: unknown step 'usr' (bot, user or wait)",
        f"{path}:6: document 2: flow: unknown flow 'grete' (flows: greet)",
        f"{path}:8: document 2: steps[0].wait: bad duration '24 hours': "
        "write e.g. 30s, 5m, 24h, 3d",
    ]


async def test_invalid_flow_fails_its_cases(flows: Path, valkey_url: str) -> None:
    (flows / "greet.yaml").write_text(GREET.replace("next: glad", "next: gald"))
    result = await run_one(flows, valkey_url, "flow: greet\nsteps: [{bot: Hello}]\n")
    assert not result.passed
    assert "flow 'greet' is invalid" in result.report()
    assert "unknown node 'gald'" in result.report()


class WindowedChannel(Channel):
    """Stands for the WhatsApp channel type: free text only within 24 h of the last inbound."""

    TYPE = "whatsapp"
    CAPABILITIES = Capabilities(schemes=("whatsapp",), window=86400, templates=True)

    async def send(self, message: dict[str, Any]) -> SendResult:
        raise AssertionError("the runner sends through its capturing channel only")


async def test_free_text_outside_the_window_is_reported_not_sent(
    flows: Path, valkey_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def channel_class(type_name: str) -> type[Channel]:
        if type_name == "whatsapp":
            return WindowedChannel
        raise UnknownChannelType(type_name)

    monkeypatch.setattr(convtest, "channel_class", channel_class)
    # The greeting has a template, so it may open the conversation; the nudge is free text
    # with no inbound message ever: the engine refuses it and the runner says so.
    result = await run_one(
        flows,
        valkey_url,
        f"""\
        flow: greet
        {WA_CONTACT}
        steps:
          - bot: {{template: greeting}}
          - wait: 1h
          - bot: Still there?
        """,
    )
    assert not result.passed
    assert "- bot: Still there?" in result.diff()
    assert "  not sent (outside_24h_window): Still there?" in result.report()
    # after a reply the window is open: the same nudge goes
    result = await run_one(
        flows,
        valkey_url,
        f"""\
        flow: greet
        {WA_CONTACT}
        steps:
          - bot: {{template: greeting}}
          - user: hmm
          - bot: Sorry to hear that.
          - bot: Tomorrow will be better.
        """,
    )
    assert result.passed, result.report()


def write_project(tmp_path: Path, flows: Path, tests: str) -> Path:
    (flows / "tests" / "greet.yaml").write_text(tests)
    config = tmp_path / "config.toml"
    config.write_text(f'[flows]\npath = "{flows}"\n')
    return config


def test_cli_exit_codes_and_summary(
    tmp_path: Path, flows: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case = f"flow: greet\nname: NAME\n{CONTACT}\nsteps: [{{bot: TEXT}}]\nstatus: waiting\n"
    good = case.replace("NAME", "good").replace("TEXT", "Hello Ana!")
    bad = case.replace("NAME", "bad").replace("TEXT", "Hi Ana!")
    config = str(write_project(tmp_path, flows, good + "---\n" + bad))

    assert main(["--config", config, "test"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "1 passed, 1 failed"
    assert any(line.startswith("PASS ") and line.endswith("(good)") for line in out)
    assert any(line.startswith("FAIL ") and line.endswith("(bad)") for line in out)

    assert main(["--config", config, "test", "-k", "GOOD"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "1 passed, 0 failed"

    write_project(tmp_path, flows, good + "---\nflow: greet\nsteps: [{wait: soon}]\n")
    assert main(["--config", config, "test"]) == 2
    out = capsys.readouterr().out
    assert "greet.yaml:8: document 2: steps[0].wait: bad duration 'soon'" in out
    assert out.splitlines()[-1] == "1 passed, 0 failed"


async def test_writes_first_starts_nothing_and_names_the_flow_the_message_started(
    flows: Path, valkey_url: str
) -> None:
    (flows / "other.yaml").write_text(
        "triggers: [{catch_all: true}]\nnodes:\n  - id: a\n    send_message: {text: caught}\n"
    )
    # greet has no trigger: the contact's message lands in the catch-all, not in greet
    result = await run_one(
        flows, valkey_url, "flow: greet\nwrites_first: new\nsteps: [{user: hi}, {bot: caught}]\n"
    )
    assert not result.passed
    assert "flow: the contact's messages started other, not greet" in result.report()
    with pytest.raises(CaseFileError) as info:
        await run(flows, valkey_url, "flow: greet\nwrites_first: yes\nsteps: [{user: hi}]\n")
    assert [p.message for p in info.value.problems] == [
        "'yes': new (the contact's first message ever) or known"
    ]
