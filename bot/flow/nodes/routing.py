"""Cases and exits shared by the nodes that route (``wait_for_reply``, ``split``).

A case reads like RapidPro's: ``{has_any_word: [si, yes], category: Yes, next: thanks}`` — one
case-test key with its arguments, a category for the result, and where to go.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bot.flow import casetests
from bot.flow.nodes.base import OTHER

if TYPE_CHECKING:
    from bot.flow.context import RunContext

_CASE_KEYS = {"category", "next"}


class Case(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    test: str
    args: list[Any] = Field(default_factory=list)
    category: str = Field(min_length=1)
    next: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_yaml(cls, raw: Any) -> Any:
        if not isinstance(raw, dict) or "test" in raw:
            return raw
        tests = [k for k in raw if k not in _CASE_KEYS]
        if len(tests) != 1:
            raise ValueError(f"a case needs exactly one case test key, found {tests or 'none'}")
        name = tests[0]
        args = casetests.normalize_args(raw[name])
        problem = casetests.check_args(name, args)
        if problem:
            raise ValueError(problem)
        return {"test": name, "args": args, **{k: raw[k] for k in _CASE_KEYS if k in raw}}


class Exit(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    category: str = Field(min_length=1)
    next: str | None = None


def case_exit(index: int) -> str:
    return f"case{index}"


def route_exits(cases: list[Case], other: Exit) -> dict[str, str | None]:
    exits: dict[str, str | None] = {case_exit(i): c.next for i, c in enumerate(cases)}
    exits[OTHER] = other.next
    return exits


def _first_match(case: Case, values: list[str]) -> str | None:
    for text in values:
        value = casetests.evaluate(case.test, text, case.args)
        if value is not None:
            return value
    return None


def case_takes(cases: list[Case], values: list[str]) -> bool:
    """Whether a case written for this answer matches it: any case but ``has_text``, which
    takes every message. Such an answer is the flow's even when it is also a stop word."""
    return any(c.test != "has_text" and _first_match(c, values) is not None for c in cases)


def route(
    cases: list[Case], other: Exit, text: str, ctx: RunContext, result: str | None, node_id: str
) -> str:
    """Pick the first case whose test matches ``text`` — or one of the reply's alternates, e.g.
    the payload of a tapped button — store the result, and return the exit."""
    values = [text, *ctx.input_alternates]
    for i, case in enumerate(cases):
        value = _first_match(case, values)
        if value is not None:
            if result:
                ctx.save_result(result, value, case.category, node_id, input_text=text)
            return case_exit(i)
    if result:
        ctx.save_result(result, text, other.category, node_id, input_text=text)
    return OTHER
