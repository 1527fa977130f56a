"""Triggers (docs/triggers.md): the normaliser, the ``triggers:`` of a flow file, claims that
clash between flows (``chasqui check``, a reload), and the engine's decision -- pure, a table."""

from __future__ import annotations

import textwrap
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.cli.main import main
from bot.engine.apply import Engine
from bot.engine.events import Reply, Start
from bot.engine.flows import FlowRegistry
from bot.engine.sprint import Limits, Route, Session, Sprint
from bot.engine.triggers import TriggerIndex, day_start
from bot.flow.casetests import fold
from bot.flow.files import Flow, FlowError, load_folder, parse_flow, trigger_conflicts
from bot.flow.machine import compile_flow
from bot.flow.triggers import normal, scan, words

# -- the normaliser ------------------------------------------------------------------------------

LATIN = "abcdefghijklmnopqrstuvwxyzñçáéíóúàèìòùâêîôûäëïöüãõ0123456789"
PUNCT = " \t\n.,;:!?¡¿-_'\"()[]«»…/*#@👋\u200b"
latin_text = st.text(alphabet=LATIN + LATIN.upper() + PUNCT, max_size=40)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("¡HOLA!", ("hola",)),
        ("Hóla", ("hola",)),
        ("info, por favor", ("info", "por", "favor")),
        ("  «Menú»  ", ("menu",)),
        ("buenos\u200bdías", ("buenos", "dias")),  # a zero-width space separates words
        ("👋hola👋", ("hola",)),
        ("don't", ("don", "t")),
        ("PEDIDO_123", ("pedido", "123")),
        ("...", ()),
        ("", ()),
        ("Straße", ("strasse",)),
        ("हिन्दी!", ("हिनदी",)),  # one word: folded as case tests fold (non-spacing marks go)
    ],
)
def test_words(text: str, expected: tuple[str, ...]) -> None:
    assert words(text) == expected


@given(latin_text)
def test_words_ignore_case(text: str) -> None:
    assert words(text.upper()) == words(text) == words(text.lower())


@given(st.text(max_size=40))
def test_words_ignore_accents_and_unicode_form(text: str) -> None:
    decomposed = unicodedata.normalize("NFD", text)
    assert words(decomposed) == words(text) == words(unicodedata.normalize("NFC", text))
    assert all(unicodedata.category(c) != "Mn" for w in words(text) for c in w)


@given(latin_text, st.sampled_from(list(PUNCT)))
def test_words_ignore_punctuation_between_and_around(text: str, mark: str) -> None:
    assert words(mark + text.replace(" ", f" {mark}") + mark) == words(text)


@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=60))
def test_the_ascii_shortcut_reads_as_the_full_scan(text: str) -> None:
    assert words(text) == scan(fold(text))


@given(st.text(max_size=60))
def test_words_are_a_fixed_point(text: str) -> None:
    found = words(text)
    assert words(normal(text)) == found  # normalising twice changes nothing
    assert all(w and " " not in w for w in found)


# -- a flow file's triggers ------------------------------------------------------------------------


def flow_text(triggers: str, send: str = "hi") -> str:
    body = textwrap.indent(textwrap.dedent(triggers).strip(), "  ")
    return f"name: x\ntriggers:\n{body}\nnodes:\n  - id: a\n    send_message: {{text: {send!r}}}\n"


def parse(name: str, text: str, channels: set[str] | None = None) -> Flow:
    return parse_flow(Path(f"flows/{name}.yaml"), text.encode(), channels)


def problems_of(text: str, channels: set[str] | None = None) -> list[str]:
    with pytest.raises(FlowError) as exc:
        parse("bad", text, channels)
    return [str(p) for p in exc.value.problems]


def test_the_three_kinds_parse_with_their_defaults() -> None:
    flow = parse(
        "ok",
        flow_text(
            """
            - keywords: [Hola, "¡Info!"]
            - keywords: [menu]
              match: whole_message
              channels: [wa]
              interrupt: true
            - catch_all: true
            - new_contact: true
              channels: [tg]
            """
        ),
        {"wa", "tg"},
    )
    kw, menu, catch, fresh = flow.triggers
    assert (kw.type, kw.keywords, kw.match, kw.channels, kw.interrupt) == (
        "keyword",
        ("hola", "info"),
        "first_word",
        None,
        False,
    )
    assert (menu.match, menu.channels, menu.interrupt, menu.line) == (
        "whole_message",
        frozenset({"wa"}),
        True,
        4,
    )
    assert (catch.type, fresh.type, fresh.channels) == (
        "catch_all",
        "new_contact",
        frozenset({"tg"}),
    )


def test_bad_triggers_name_file_line_and_field() -> None:
    text = flow_text(
        """
        - keywords: [hola, "buenos dias", "!!"]
        - catch_all: true
          interrupt: true
        - keywords: []
        - keywords: [x]
          match: whole
        - keyword: [typo]
        - keywords: [y]
          channels: [nope]
        - keywords: [HOLA]
        """
    )
    assert problems_of(text, {"wa"}) == [
        "flows/bad.yaml:3: triggers[0].keywords[1]: keyword 'buenos dias' is several words: "
        "first_word compares one word (use match: whole_message for a phrase)",
        "flows/bad.yaml:3: triggers[0].keywords[2]: keyword '!!' has no letters or digits: "
        "it would match nothing",
        "flows/bad.yaml:5: triggers[1].interrupt: unknown key",
        "flows/bad.yaml:6: triggers[2].keywords: List should have at least 1 item after "
        "validation, not 0",
        "flows/bad.yaml:8: triggers[3].match: Input should be 'first_word', 'any_word' or "
        "'whole_message'",
        "flows/bad.yaml:9: triggers[4]: a trigger is one of {keywords: [...], match: ...}, "
        "{catch_all: true} or {new_contact: true}",
        "flows/bad.yaml:11: triggers[5].channels[0]: unknown channel 'nope' (channels: wa)",
        "flows/bad.yaml:12: triggers[6].keywords[0]: keyword 'HOLA' is already in triggers[0]",
    ]


# -- claims between flows ------------------------------------------------------------------------


def clashes(**texts: str) -> list[str]:
    flows = {name: parse(name, text, {"wa", "tg"}) for name, text in texts.items()}
    return [str(problem) for _, _, problem in trigger_conflicts(flows)]


def test_the_same_keyword_on_a_shared_channel_clashes_naming_both_files() -> None:
    found = clashes(
        a=flow_text("- keywords: [hola]\n  channels: [wa]"),
        b=flow_text("- keywords: [info, ¡HOLA!]\n  match: any_word"),
    )
    assert found == [
        "flows/b.yaml:3: triggers[0]: keyword 'hola' on channel 'wa' is already claimed by "
        "flows/a.yaml:3 (flow 'a'): one message starts one flow"
    ]


@pytest.mark.parametrize(
    ("a", "b", "clash"),
    [
        ("- keywords: [hola]\n  channels: [wa]", "- keywords: [hola]\n  channels: [tg]", False),
        ("- keywords: [hola]", "- keywords: [hello]", False),
        ("- keywords: [hola]", "- keywords: [hola]\n  match: whole_message", True),
        ("- catch_all: true", "- catch_all: true\n  channels: [tg]", True),
        ("- catch_all: true\n  channels: [wa]", "- catch_all: true\n  channels: [tg]", False),
        ("- new_contact: true", "- new_contact: true", True),
        ("- new_contact: true", "- catch_all: true", False),
    ],
)
def test_what_clashes(a: str, b: str, clash: bool) -> None:
    assert bool(clashes(a=flow_text(a), b=flow_text(b))) is clash


def write_flows(folder: Path, **texts: str) -> None:
    folder.mkdir(exist_ok=True)
    for name, text in texts.items():
        (folder / f"{name}.yaml").write_text(text)


def write_config(tmp_path: Path, flows: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[flows]\npath = "{flows}"\n[redis]\ndata_dir = "{tmp_path / "var"}"\n'
        '[channels.console]\ntype = "console"\n'
    )
    return path


def test_check_fails_on_a_keyword_two_flows_claim(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flows = tmp_path / "flows"
    write_flows(
        flows,
        greet=flow_text("- keywords: [hola]"),
        sales=flow_text("- keywords: [precio, Hola]\n  channels: [console]"),
    )
    config = write_config(tmp_path, flows)
    assert main(["--config", str(config), "check"]) == 1
    out = capsys.readouterr().out
    assert (
        f"{flows}/sales.yaml:3: triggers[0]: keyword 'hola' on channel 'console' is already "
        f"claimed by {flows}/greet.yaml:3 (flow 'greet')"
    ) in out
    # checking the one file still finds its clash with the others beside it
    assert main(["--config", str(config), "check", str(flows / "greet.yaml")]) == 1
    assert f"{flows}/greet.yaml:3: triggers[0]: keyword 'hola'" in capsys.readouterr().out


def test_a_reload_refuses_a_flow_claiming_a_keyword_another_holds(tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    write_flows(flows, greet=flow_text("- keywords: [hola]", "greet"))
    registry = FlowRegistry(flows, [Route("wa", ("whatsapp",))], Limits())
    assert registry.reload().problems == []
    # a new flow that claims it is refused...
    write_flows(flows, sales=flow_text("- keywords: [HOLA]", "sales"))
    report = registry.reload()
    assert sorted(registry.flows) == ["greet"] and report.loaded == []
    assert [p.file for p in report.problems] == [f"{flows}/sales.yaml"]
    assert f"already claimed by {flows}/greet.yaml:3" in report.problems[0].message
    (flows / "sales.yaml").unlink()
    # ...and one that was live keeps its previous version
    write_flows(flows, other=flow_text("- keywords: [precio]", "other v1"))
    assert registry.reload().problems == []
    write_flows(flows, other=flow_text("- keywords: [precio, hola]", "other v2"))
    report = registry.reload()
    assert sorted(registry.flows) == ["greet", "other"]
    assert report.kept == ["other"] and "other" not in report.loaded
    assert {p.file for p in report.problems} == {f"{flows}/other.yaml"}
    assert registry.engine.triggers.keyword("hola", "wa").flow == "greet"  # type: ignore[union-attr]
    assert registry.engine.triggers.keyword("precio", "wa").flow == "other"  # type: ignore[union-attr]
    # once the holder lets go, the next reload gives the keyword to the other flow
    write_flows(flows, greet=flow_text("- keywords: [hi]", "greet"))
    assert registry.reload().problems == []
    assert registry.engine.triggers.keyword("¡hola!", "wa").flow == "other"  # type: ignore[union-attr]


def test_load_folder_reports_a_clash() -> None:
    _, problems = load_folder(Path(__file__).parent.parent / "flows")
    assert problems == []  # the shipped flows claim nothing twice


# -- the engine's decision: a table of cases -------------------------------------------------------

FLOWS = {
    "kw": """
        triggers:
          - keywords: [hola, info]
          - keywords: [precio]
            match: any_word
            channels: [wa]
          - keywords: ["buenos días"]
            match: whole_message
    """,
    "menu": """
        triggers:
          - keywords: [menu]
            match: whole_message
            interrupt: true
    """,
    "catch": "triggers:\n  - catch_all: true\n",
    "fresh": "triggers:\n  - new_contact: true\n    channels: [wa]\n",
    "survey": "",  # waits, with cases for si and no
    "quiz": "",  # waits, with a case for "menu"
}
WAITS = {
    "survey": '{has_any_word: [si, "no"], category: Known, next: done}',
    "quiz": "{has_any_word: [menu], category: Menu, next: done}",
}


def engine_flow(name: str, head: str) -> Flow:
    case = WAITS.get(name)
    nodes = (
        f"nodes:\n  - id: ask\n    wait_for_reply:\n      cases: [{case}]\n"
        "      other: {category: Other, next: ask_again}\n"
        "  - id: ask_again\n    send_message: {text: again}\n    next: ask\n"
        "  - id: done\n    send_message: {text: done}\n"
        if case
        else "nodes:\n  - id: hi\n    send_message: {text: '@trigger.type @trigger.keyword'}\n"
        "    next: wait\n  - id: wait\n    wait_for_reply: {}\n"
    )
    text = f"name: {name}\n" + textwrap.dedent(head) + nodes
    flow = parse(name, text, {"wa", "tg"})
    compile_flow(flow)
    return flow


@pytest.fixture(scope="module")
def engine() -> Engine:
    flows = {name: engine_flow(name, head) for name, head in FLOWS.items()}
    routes = [Route("wa", ("whatsapp",)), Route("tg", ("telegram",))]
    return Engine(flows, routes, Limits(), TriggerIndex(flows.values()))


NOW = 1_767_225_600.0


def outcome(engine: Engine, state: str, text: str, channel: str, new: bool) -> Any:
    """What a message does: (flow started, trigger type, keyword) | "reply" | "opted out" |
    None (nothing)."""
    contact: dict[str, Any] = {
        "uuid": "c1",
        "urns": ["whatsapp:+1", "telegram:1"],
        "status": "opted_out" if state == "opted out" else "active",
    }
    sprint: Sprint = engine.sprint(contact, Session(), NOW)
    if state.startswith("waiting in "):
        engine.apply(sprint, Start(flow=state.removeprefix("waiting in "), at=NOW))
    before = {r["uuid"] for r in sprint.new_runs}
    waiting = sprint.run["uuid"] if sprint.session.frames else None
    record_only = text == "<reaction>"
    engine.apply(
        sprint,
        Reply(
            text="" if record_only else text,
            channel=channel,
            urn="whatsapp:+1",
            at=NOW,
            new_contact=new,
            record_only=record_only,
        ),
    )
    started = [r for r in sprint.new_runs if r["uuid"] not in before]
    if contact["status"] == "opted_out" and state != "opted out":
        return "opted out"
    if started:
        (run,) = started
        trigger = run["trigger"]
        assert trigger["text"] == text and trigger["channel"] == channel
        if sprint.ended_runs:  # the run it was in ended, interrupted
            assert [r["status"] for r in sprint.ended_runs] == ["interrupted"]
        inbound = next(m for m in sprint.messages if m["direction"] == "in")
        assert inbound["run"] == run["uuid"] and inbound["status"] == "handled"
        return run["flow"], trigger["type"], trigger.get("keyword")
    inbound = next(m for m in sprint.messages if m["direction"] == "in")
    if waiting is not None and inbound["run"] == waiting:
        return "reply"
    return None


@pytest.mark.parametrize(
    ("state", "text", "channel", "new", "expected"),
    [
        # opt-out words first, whatever else the message could be
        ("new", "STOP", "wa", True, "opted out"),
        ("waiting in survey", "¡Baja!", "wa", False, "opted out"),
        # a new contact's first message: new_contact before keywords (on its channels)
        ("new", "hola", "wa", True, ("fresh", "new_contact", None)),
        ("new", "hola", "tg", True, ("kw", "keyword", "hola")),
        ("new", "what?", "tg", True, ("catch", "catch_all", None)),
        # keywords: first word (default), any word, whole message; case, accents, punctuation
        ("in no flow", "¡HOLA!", "wa", False, ("kw", "keyword", "hola")),
        ("in no flow", "Info, por favor", "wa", False, ("kw", "keyword", "info")),
        ("in no flow", "quiero info", "wa", False, ("catch", "catch_all", None)),
        ("in no flow", "¿Cuál es el PRECIO?", "wa", False, ("kw", "keyword", "precio")),
        ("in no flow", "¿Cuál es el precio?", "tg", False, ("catch", "catch_all", None)),
        ("in no flow", "Buenos dias!!", "wa", False, ("kw", "keyword", "buenos dias")),
        ("in no flow", "buenos días a todos", "wa", False, ("catch", "catch_all", None)),
        ("in no flow", "Menú", "tg", False, ("menu", "keyword", "menu")),
        ("in no flow", "", "wa", False, ("catch", "catch_all", None)),  # a photo, no caption
        # a waiting run takes the reply; only interrupt: true keywords take it away
        ("waiting in survey", "hola", "wa", False, "reply"),
        ("waiting in survey", "sí", "wa", False, "reply"),
        ("waiting in survey", "whatever", "wa", False, "reply"),
        ("waiting in survey", "MENU!", "wa", False, ("menu", "keyword", "menu")),
        ("waiting in survey", "menu please", "wa", False, "reply"),
        ("waiting in quiz", "menu", "wa", False, "reply"),  # the question has a case for it
        # nothing for contacts who opted out, nor for a reaction
        ("opted out", "hola", "wa", False, None),
        ("in no flow", "<reaction>", "wa", False, None),
    ],
)
def test_what_a_message_starts(
    engine: Engine, state: str, text: str, channel: str, new: bool, expected: Any
) -> None:
    assert outcome(engine, state, text, channel, new) == expected


def test_trigger_is_what_started_the_run_and_it_is_counted(engine: Engine) -> None:
    contact = {"uuid": "c1", "urns": ["whatsapp:+1"], "status": "active"}
    sprint = engine.sprint(contact, Session(), NOW)
    engine.apply(sprint, Reply(text="Hola amigos", channel="wa", urn="whatsapp:+1", at=NOW))
    (sent,) = [m for m in sprint.messages if m["direction"] == "out"]
    assert sent["text"] == "keyword hola"  # @trigger.type @trigger.keyword
    assert sprint.counts[("kw", "trigger:keyword")] == 1
    assert sprint.counts[("kw", "run:started")] == 1
    assert sprint.run["trigger"] == {
        "type": "keyword",
        "keyword": "hola",
        "text": "Hola amigos",
        "channel": "wa",
    }
    # counted on the flow's record of the day in the starts history, as are its messages
    assert sprint.run["start"] == day_start("kw", NOW) == sent["start"]
    assert sent["opening"] is True


def test_one_record_per_flow_and_utc_day() -> None:
    midnight = 1_767_225_600.0  # 2026-01-01T00:00:00Z
    assert day_start("kw", midnight) == day_start("kw", midnight + 86399.9)
    assert day_start("kw", midnight) != day_start("kw", midnight - 0.1)
    assert day_start("kw", midnight) != day_start("catch", midnight)


def test_a_stale_message_starts_nothing(engine: Engine) -> None:
    contact = {"uuid": "c1", "urns": ["whatsapp:+1"], "status": "active"}
    sprint = engine.sprint(contact, Session(), NOW)
    old = NOW - Limits().max_reply_age - 1
    engine.apply(sprint, Reply(text="hola", channel="wa", urn="whatsapp:+1", at=old, sent_at=old))
    assert sprint.new_runs == []
