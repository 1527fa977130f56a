"""Stop words against answers: a stop word opts out only as the whole message, and never when
the waiting question has a case for it (through the real worker, on the test Valkey)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.cli.main import main
from bot.engine.optout import OptOut
from tests.support.harness import Bot, MakeBot

CONFIRM = """
language: es
nodes:
  - id: ask
    send_message: {text: "¿Confirmas tu cita?"}
    next: wait
  - id: wait
    wait_for_reply:
      result: confirm
      cases:
        - {has_any_word: ["sí", "si"], category: "Yes", next: booked}
        - {has_any_word: [no, cancelar], category: "No", next: cancelled}
      other: {category: Other, next: ask}
  - id: booked
    send_message: {text: "¡Te esperamos!"}
  - id: cancelled
    send_message: {text: "Cita cancelada."}
"""

NAME = """
nodes:
  - id: ask
    send_message: {text: "¿Cómo te llamas?"}
    next: wait
  - id: wait
    wait_for_reply:
      result: name
      cases: [{has_text: true, category: Name, next: thanks}]
  - id: thanks
    send_message: {text: "Gracias, @results.name"}
"""


@pytest.fixture
async def bot(make_bot: MakeBot) -> Bot:
    b = await make_bot()
    b.write("confirm", CONFIRM)
    b.write("name", NAME)
    return b


async def answer(bot: Bot, flow: str, text: str) -> tuple[str, dict[str, Any]]:
    """Start ``flow`` for a new contact, answer ``text``; the contact's id and last inbound."""
    cid = await bot.contact()
    await bot.start(cid, flow)
    await bot.drain()
    await bot.reply(cid, text)
    await bot.drain()
    inbound = await bot.messages(cid, "in")
    return cid, inbound[-1]


@pytest.mark.parametrize("text", ["Cancelar", " ¡CANCELAR! ", "cancelar."])
async def test_a_case_that_names_the_stop_word_takes_the_answer(bot: Bot, text: str) -> None:
    cid, inbound = await answer(bot, "confirm", text)
    assert (await bot.get_contact(cid))["status"] == "active"
    assert await bot.texts(cid) == ["¿Confirmas tu cita?", "Cita cancelada."]
    assert "action" not in inbound and inbound["run"] is not None
    [run] = await bot.runs(cid)
    assert run["status"] == "completed"
    assert run["results"]["confirm"]["category"] == "No"


async def test_a_stop_word_no_case_takes_opts_out(bot: Bot) -> None:
    cid, inbound = await answer(bot, "confirm", "BAJA")
    assert (await bot.get_contact(cid))["status"] == "opted_out"
    assert inbound["action"] == "opt_out" and inbound["run"] is None
    [run] = await bot.runs(cid)
    assert run["status"] == "interrupted"
    assert (await bot.texts(cid))[-1].startswith("Listo: no te enviaremos")


async def test_a_sentence_with_a_stop_word_is_an_answer(bot: Bot) -> None:
    cid, inbound = await answer(bot, "confirm", "no quiero darme de baja")
    assert (await bot.get_contact(cid))["status"] == "active"
    assert "action" not in inbound
    [run] = await bot.runs(cid)
    assert run["results"]["confirm"]["value"] == "no"


async def test_a_case_for_any_text_does_not_take_a_stop_word(bot: Bot) -> None:
    cid, inbound = await answer(bot, "name", "STOP")
    assert (await bot.get_contact(cid))["status"] == "opted_out"
    assert inbound["action"] == "opt_out"


async def test_a_stop_word_outside_any_run_still_opts_out(bot: Bot) -> None:
    cid = await bot.contact()
    await bot.reply(cid, "Cancelar")
    await bot.drain()
    assert (await bot.get_contact(cid))["status"] == "opted_out"


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("  ¡Baja!  ", ("stop", "es")),
        ("«baja»", ("stop", "es")),
        ("BAJA…", ("stop", "es")),
        ("\u00a0stop\u200b", ("stop", "es")),
        ("baja por favor", None),
        ("no quiero darme de baja", None),
        ("b a j a", None),
    ],
)
def test_stop_words_are_the_whole_message(text: str, found: tuple[str, str] | None) -> None:
    assert OptOut().match(text) == found


def test_stop_word_of() -> None:
    rules = OptOut()
    assert rules.stop_word("Cancelar") == "es"
    assert rules.stop_word("cita") is None


def test_check_warns_when_a_case_word_is_a_stop_word(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "confirm.yaml").write_text(CONFIRM, encoding="utf-8")
    (tmp_path / "flows" / "name.yaml").write_text(NAME, encoding="utf-8")
    (tmp_path / "config.toml").write_text('[flows]\npath = "flows"\n', encoding="utf-8")
    assert main(["--config", str(tmp_path / "config.toml"), "check"]) == 0  # a warning only
    out = capsys.readouterr().out
    [warning] = [line for line in out.splitlines() if "stop word" in line]
    assert "confirm.yaml" in warning and "nodes[1] (wait)" in warning
    assert "'cancelar'" in warning and "cases[1]" in warning
