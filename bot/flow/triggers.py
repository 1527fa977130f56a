"""Triggers: what makes a flow start when a contact writes first, declared in its file.

A flow file's top-level ``triggers:`` list holds items of three kinds::

    triggers:
      - keywords: [hola, info]      # match: first_word (default) | any_word | whole_message
        channels: [whatsapp]        # optional: only messages that came through these channels
        interrupt: true             # optional: also when the contact waits in another flow
      - catch_all: true             # a contact in no flow whose message matched no keyword
      - new_contact: true           # the first message ever of a contact

This module is data only: the models and the one normaliser both keywords and messages go
through (:func:`words`); the check between flows is ``trigger_conflicts`` in bot/flow/files.py.
Which trigger fires for a message, and in which order, is the engine's decision
(bot/engine/triggers.py).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.core.validation import location, message
from bot.flow.casetests import fold

TriggerType = Literal["keyword", "catch_all", "new_contact"]
TRIGGER_TYPES: tuple[TriggerType, ...] = ("keyword", "catch_all", "new_contact")
MatchMode = Literal["first_word", "any_word", "whole_message"]
_ASCII_WORD = re.compile(r"[a-z0-9]+")  # casefolded ASCII: letters and digits
MAX_KEYWORD = 64  # characters: a keyword is a word or a short phrase, not a message


def words(text: str) -> tuple[str, ...]:
    """The words of ``text`` compared case-, accent- and punctuation-insensitively.

    Casefolded, accents dropped (NFD without non-spacing marks, as case tests fold), and
    split on everything that is not a letter, a digit or a mark: punctuation, symbols, emoji,
    spaces and invisible characters separate words and are never part of one. So "¡Hola!",
    "HOLA" and "hola" are ``("hola",)``, and "info, por favor" is ``("info", "por", "favor")``.
    Pure and cheap enough to run on every inbound message.
    """
    folded = fold(text)
    if folded.isascii():  # most messages, once accents are gone: one C-level scan
        return tuple(_ASCII_WORD.findall(folded))
    return scan(folded)


def scan(folded: str) -> tuple[str, ...]:
    """The words of folded text, character by character (any script): runs of letters,
    digits and marks."""
    out: list[str] = []
    current: list[str] = []
    for char in folded:
        if unicodedata.category(char)[0] in "LNM":
            current.append(char)
        elif current:
            out.append("".join(current))
            current = []
    if current:
        out.append("".join(current))
    return tuple(out)


def normal(text: str) -> str:
    """``text`` as one comparable string: its :func:`words` joined by single spaces."""
    return " ".join(words(text))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KeywordSpec(_Strict):
    keywords: list[str] = Field(min_length=1)
    match: MatchMode = "first_word"
    channels: list[str] | None = Field(default=None, min_length=1)
    interrupt: bool = False


class CatchAllSpec(_Strict):
    catch_all: Literal[True]
    channels: list[str] | None = Field(default=None, min_length=1)


class NewContactSpec(_Strict):
    new_contact: Literal[True]
    channels: list[str] | None = Field(default=None, min_length=1)


SPECS: dict[str, tuple[TriggerType, type[_Strict]]] = {
    "keywords": ("keyword", KeywordSpec),
    "catch_all": ("catch_all", CatchAllSpec),
    "new_contact": ("new_contact", NewContactSpec),
}


@dataclass(frozen=True)
class Trigger:
    """One item of a flow's ``triggers:``, checked: keywords already normalised."""

    type: TriggerType
    index: int  # its position in the file's list, for messages
    line: int | None
    keywords: tuple[str, ...] = ()  # normal() of each keyword, in file order
    match: MatchMode = "first_word"
    channels: frozenset[str] | None = None  # None: every channel
    interrupt: bool = False

    def claims(self) -> list[tuple[str, str | None]]:
        """What no other flow may also claim on a channel it shares with this one: each
        keyword (a ``catch_all`` and a ``new_contact`` claim themselves)."""
        names = [f"keyword {k!r}" for k in self.keywords] if self.type == "keyword" else [self.type]
        channels = sorted(self.channels) if self.channels is not None else [None]
        return [(name, channel) for name in names for channel in channels]


@dataclass(frozen=True)
class TriggerProblem:
    """A problem of one trigger, located within the file (files.py turns it into a Problem)."""

    message: str
    path: list[str | int]
    field: str


def build_triggers(
    raw: list[Any], channels: set[str] | None, line_of: Any
) -> tuple[list[Trigger], list[TriggerProblem]]:
    """Check a file's ``triggers:`` list: the triggers and every problem found.

    ``line_of(path)`` gives the line of a YAML path; ``channels`` are the configured channel
    names (None: not checked).
    """
    triggers: list[Trigger] = []
    problems: list[TriggerProblem] = []
    seen: dict[str, int] = {}  # keyword -> index of the trigger that has it first

    def problem(text: str, path: list[str | int]) -> None:
        problems.append(TriggerProblem(text, ["triggers", *path], location(["triggers", *path])))

    for index, item in enumerate(raw):
        kinds = [k for k in SPECS if isinstance(item, dict) and k in item]
        if len(kinds) != 1:
            problem(
                "a trigger is one of {keywords: [...], match: ...}, {catch_all: true} or "
                "{new_contact: true}" + (f", not several ({', '.join(kinds)})" if kinds else ""),
                [index],
            )
            continue
        kind, spec_class = SPECS[kinds[0]]
        try:
            spec = spec_class.model_validate(item)
        except ValidationError as exc:
            for err in exc.errors():
                problem(message(err), [index, *err["loc"]])
            continue
        names = getattr(spec, "channels", None)
        for n, name in enumerate(names or []):
            if channels is not None and name not in channels:
                known = ", ".join(sorted(channels)) or "none configured"
                problem(f"unknown channel {name!r} (channels: {known})", [index, "channels", n])
        keywords: list[str] = []
        if isinstance(spec, KeywordSpec):
            for n, keyword in enumerate(spec.keywords):
                found = words(keyword)
                if not found or len(keyword) > MAX_KEYWORD:
                    why = "has no letters or digits" if not found else "is too long"
                    problem(
                        f"keyword {keyword!r} {why}: it would match nothing", [index, "keywords", n]
                    )
                    continue
                if len(found) > 1 and spec.match != "whole_message":
                    problem(
                        f"keyword {keyword!r} is several words: {spec.match} compares one word "
                        "(use match: whole_message for a phrase)",
                        [index, "keywords", n],
                    )
                    continue
                key = " ".join(found)
                if key in seen:
                    problem(
                        f"keyword {keyword!r} is already in triggers[{seen[key]}]",
                        [index, "keywords", n],
                    )
                    continue
                seen[key] = index
                keywords.append(key)
        triggers.append(
            Trigger(
                type=kind,
                index=index,
                line=line_of(["triggers", index]),
                keywords=tuple(keywords),
                match=getattr(spec, "match", "first_word"),
                channels=frozenset(names) if names else None,
                interrupt=getattr(spec, "interrupt", False),
            )
        )
    return triggers, problems
