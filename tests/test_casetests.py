"""Data-driven tests for bot/flow/casetests.py; the cases live in tests/data/casetests.yaml."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from bot.flow.casetests import CASE_TESTS, check_args, evaluate, normalize_args

DATA = Path(__file__).parent / "data" / "casetests.yaml"


def _load() -> dict[str, list[dict[str, Any]]]:
    data = YAML(typ="safe").load(DATA.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


CASES = _load()
PARAMS = [
    pytest.param(name, case, id=f"{name}-{i}")
    for name, cases in CASES.items()
    for i, case in enumerate(cases)
]


@pytest.mark.parametrize(("name", "case"), PARAMS)
def test_case(name: str, case: dict[str, Any]) -> None:
    assert set(case) == {"args", "text", "expect"}, "each case needs exactly args, text, expect"
    expect = case["expect"]
    assert expect is None or isinstance(expect, str), "quote expected values: they are strings"
    args = normalize_args(case["args"])
    assert check_args(name, args) is None
    assert evaluate(name, case["text"], args) == expect


def test_data_file_covers_exactly_the_registry() -> None:
    missing = sorted(name for name in CASE_TESTS if len(CASES.get(name) or []) < 4)
    unknown = sorted(set(CASES) - set(CASE_TESTS))
    assert missing == [], f"case tests with fewer than 4 cases in {DATA.name}"
    assert unknown == [], f"names in {DATA.name} that are not registered case tests"


def test_every_test_has_a_match_and_a_non_match() -> None:
    for name, cases in CASES.items():
        expects = [case["expect"] for case in cases]
        assert None in expects, f"{name} has no non-matching case"
        assert any(e is not None for e in expects), f"{name} has no matching case"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (True, []),
        (None, []),
        ("si", ["si"]),
        (5, [5]),
        ([1, 10], [1, 10]),
        (("a", "b"), ["a", "b"]),
        (False, [False]),  # not "no arguments": check_args then reports it
    ],
)
def test_normalize_args(raw: object, expected: list[object]) -> None:
    assert normalize_args(raw) == expected


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("has_foo", [], "unknown case test 'has_foo'"),
        (
            "has_any_words",
            ["si"],
            "unknown case test 'has_any_words' (did you mean 'has_any_word'?)",
        ),
        ("has_number_between", [1], "has_number_between takes 2 numbers, got 1"),
        ("has_number_between", [1, 2, 3], "has_number_between takes 2 numbers, got 3"),
        ("has_number_between", [10, 1], "has_number_between: min 10 is greater than max 1"),
        ("has_number_lt", [], "has_number_lt takes 1 number, got 0"),
        ("has_number_lt", ["abc"], "has_number_lt: argument 1 must be a number, got 'abc'"),
        ("has_number_gt", [True], "has_number_gt: argument 1 must be a number, got True"),
        ("has_number_eq", [float("nan")], "has_number_eq: argument 1 must be a number, got nan"),
        (
            "has_number_between",
            [1, "x"],
            "has_number_between: argument 2 must be a number, got 'x'",
        ),
        ("has_email", [False], "has_email takes no arguments, got 1"),
        ("has_text", ["x"], "has_text takes no arguments, got 1"),
        ("has_any_word", [], "has_any_word takes at least 1 word, got 0"),
        ("has_any_word", ["si", "!!"], "has_any_word: argument 2 ('!!') contains no words"),
        ("has_all_words", [["si"]], "has_all_words: argument 1 must be a string, got ['si']"),
        ("has_phrase", ["a", "b"], "has_phrase takes 1 phrase, got 2"),
        ("has_beginning", ["👍"], "has_beginning: argument 1 ('👍') contains no words"),
        ("has_pattern", [], "has_pattern takes 1 pattern, got 0"),
        ("has_pattern", [""], "has_pattern: empty pattern matches everything"),
    ],
)
def test_check_args_messages(name: str, args: list[object], message: str) -> None:
    assert check_args(name, args) == message


@pytest.mark.parametrize("pattern", ["(unclosed", "[a-", "a{99999999999}", "*x"])
def test_check_args_rejects_bad_regex(pattern: str) -> None:
    message = check_args("has_pattern", [pattern])
    assert message is not None
    assert message.startswith("has_pattern: invalid regex: ")


@pytest.mark.parametrize("args", [[1, 10], ["1", "10"], [1.5, "2.5"], [-3, 0]])
def test_check_args_accepts_numbers_and_numeric_strings(args: list[object]) -> None:
    assert check_args("has_number_between", args) is None


def test_evaluate_rejects_bad_args() -> None:
    with pytest.raises(ValueError, match="unknown case test 'has_foo'"):
        evaluate("has_foo", "hola", [])
    with pytest.raises(ValueError, match="takes 2 numbers"):
        evaluate("has_number_between", "5", [1])


NASTY = [
    "",
    " ",
    "\x00\x01\x1b[31m\x7f",
    "\ud800",  # lone surrogate
    "👍" * 1000,
    "👨‍👩‍👧‍👦🏳️‍🌈",
    "\u0301" * 5000,  # combining marks with no base letter
    "a" * 100_000 + "@",
    "a." * 50_000 + "@x",
    "1" * 100_000,
    "1," * 50_000,
    "1 " * 50_000,
    "-" * 50_000 + "1",
    "(1" * 50_000,
    "1/1/" * 25_000,
    "ß" * 1000 + "ﬁ" + "İ",
    "\u202e\u200d\ufeff",
    "9" * 5000 + "." + "9" * 5000,
]
SAMPLE_ARGS = {name: normalize_args(cases[0]["args"]) for name, cases in CASES.items()}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("name", sorted(CASE_TESTS))
def test_evaluate_never_raises(name: str) -> None:
    rng = random.Random(name)  # deterministic fuzz mixing the characters the parsers care about
    alphabet = "aeíñ1907 .,-+/()@_:\n\t👍\u0301\u200dßİ٢"
    fuzz = ["".join(rng.choices(alphabet, k=rng.randint(0, 60))) for _ in range(300)]
    for text in NASTY + fuzz:
        result = evaluate(name, text, SAMPLE_ARGS[name])
        assert result is None or isinstance(result, str)
