"""RapidPro-style case tests: pure functions that decide whether a reply matches a route.

Each test takes the contact's text plus the arguments written in the flow YAML and returns
``None`` (no match) or the matched value, which the engine stores as ``@results.<name>.value``.
A match may in principle be the empty string (``has_pattern`` with a pattern that matches
nothing), so callers must test ``is not None``, not truthiness.

Tokenisation rule for the word tests: a word is a run of letters, digits, underscores and
combining marks, and an apostrophe (``'`` or ``’``) between two of them stays inside the word
("don't", "l'eau"); everything else (whitespace, punctuation, symbols, emoji) separates words.
Words are compared after folding (casefold, Unicode NFD, drop non-spacing marks, ``’`` read
as ``'``), so "SÍ", "sí" and "si" are the same word, and so are "don’t" and
"don't". The underscore is a *word* character so that button payloads such as
``NOT_RECEIVED`` stay a single word: it matches only ``not_received`` (in any case), never the
reply "received" or "not received".
"""

from __future__ import annotations

import difflib
import functools
import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Literal

CaseFunc = Callable[[str, Sequence[object]], str | None]
ArgKind = Literal["none", "words", "phrase", "pattern", "number", "range"]


def _mark_ranges() -> str:
    """Regex class body of all combining marks (planes 0-1 and 14 hold every one of them)."""
    cps = [
        cp
        for block in (range(0x20000), range(0xE0000, 0xE1000))
        for cp in block
        if unicodedata.category(chr(cp)).startswith("M")
    ]
    out, start = [], cps[0]
    for prev, cp in zip(cps, [*cps[1:], -1], strict=True):  # -1 closes the last range
        if cp != prev + 1:
            out.append(f"{re.escape(chr(start))}-{re.escape(chr(prev))}")
            start = cp
    return "".join(out)


# Marks are included so decomposed input ("si" + U+0301) and Indic vowel signs stay in one word.
# An apostrophe between word characters joins them: "can't" is one word, not "can" and "t".
WORD_CHAR = rf"[\w{_mark_ranges()}]"  # also what expression names are made of
_WORD_RE = re.compile(rf"{WORD_CHAR}+(?:['\u2019]{WORD_CHAR}+)*")
_NUMBER_RE = re.compile(
    r"(?:(?<![\w.,\-−])(?P<sign>[\-−]))?(?<!\d)(?<!\d[.,])(?:"
    # thousands grouping: 1,000 / 1.000.000 / 12,345.67 / 1.234,5 (a single leading 0 never groups)
    r"(?P<grouped>[1-9][0-9]{0,2}(?P<sep>[.,])\d{3}(?:(?P=sep)\d{3})*(?:(?!(?P=sep))[.,]\d+)?)"
    r"(?![.,]?\d)"
    r"|(?P<plain>\d+(?:[.,]\d+)?)"
    # a leading decimal point: ".5" (not after a word: "v.5" is 5, as before)
    r"|(?<![\w.,])(?P<fraction>\.\d+))"
)
_NON_ASCII_DIGIT_RE = re.compile(r"(?![0-9])\d")
# Possessive runs anchored by a look-behind: each run is scanned once, so search stays linear.
# The local part takes every character RFC 5322 allows unquoted ("o'brien", "foo~$1+spam").
_LOCAL_CHARS = r"[\w.!#$%&'*+/=?^`{|}~\-]"
_EMAIL_RE = re.compile(rf"(?<!{_LOCAL_CHARS})(?P<local>{_LOCAL_CHARS}++)@(?P<domain>[\w.\-]++)")
_QUOTES = "'`{"  # opening a local part, these quote the address: not part of it
_PHONE_RE = re.compile(r"(?<![\w+])\+?\(?[0-9](?:[ ()\-]{0,3}[0-9]){6,14}(?![ ()\-]{0,3}[0-9])")
_DATE_RE = re.compile(
    r"(?<![0-9])(?:(?P<y>[0-9]{4})(?P<s1>[/.\-])(?P<m>[0-9]{1,2})(?P=s1)(?P<d>[0-9]{1,2})"
    r"|(?P<d2>[0-9]{1,2})(?P<s2>[/.\-])(?P<m2>[0-9]{1,2})(?P=s2)(?P<y2>[0-9]{4}))(?![0-9])"
)


@functools.lru_cache(maxsize=4096)
def fold(text: str) -> str:
    """Case- and accent-insensitive form: casefold, NFD, drop non-spacing marks. Cached: each
    case of a wait folds the same reply and the same argument words again."""
    decomposed = unicodedata.normalize("NFD", text.casefold())
    return "".join(c for c in decomposed if unicodedata.category(c) != "Mn")


def _tokens(text: str) -> list[tuple[int, int, str]]:
    """(start, end, folded word) for each word of `text`; spans point into the original."""
    spans = (
        (m.start(), m.end(), fold(m.group()).replace("\u2019", "'"))
        for m in _WORD_RE.finditer(text)
    )
    return [(s, e, w) for s, e, w in spans if w]


def _arg_words(args: Sequence[object]) -> list[str]:
    return list(_words_of(tuple(str(arg) for arg in args)))


@functools.lru_cache(maxsize=1024)
def _words_of(args: tuple[str, ...]) -> tuple[str, ...]:
    # A flow's case arguments are constant: fold them once, not on every reply (hot path).
    return tuple(w for arg in args for _, _, w in _tokens(arg))


def _has_text(text: str, args: Sequence[object]) -> str | None:
    # Control and format characters (NUL, zero-width space, ...) are as blank as spaces.
    visible = any(not c.isspace() and unicodedata.category(c) not in ("Cc", "Cf") for c in text)
    return text.strip() if visible else None


def _has_any_word(text: str, args: Sequence[object]) -> str | None:
    wanted = set(_arg_words(args))
    return " ".join(text[s:e] for s, e, w in _tokens(text) if w in wanted) or None


def _has_all_words(text: str, args: Sequence[object]) -> str | None:
    wanted, found = set(_arg_words(args)), dict[str, str]()
    for s, e, w in _tokens(text):
        if w in wanted:
            found.setdefault(w, text[s:e])
    return " ".join(found.values()) if len(found) == len(wanted) else None


def _has_phrase(text: str, args: Sequence[object]) -> str | None:
    phrase, tokens = _arg_words(args), _tokens(text)
    n = len(phrase)
    for i in range(len(tokens) - n + 1):
        if [w for _, _, w in tokens[i : i + n]] == phrase:
            return text[tokens[i][0] : tokens[i + n - 1][1]]
    return None


def _has_only_phrase(text: str, args: Sequence[object]) -> str | None:
    tokens = _tokens(text)
    if [w for _, _, w in tokens] != _arg_words(args):
        return None
    return text[tokens[0][0] : tokens[-1][1]]


def _has_beginning(text: str, args: Sequence[object]) -> str | None:
    """Character prefix of the folded text, ignoring leading spaces, punctuation and emoji."""
    arg = fold(str(args[0]))
    start, first = _WORD_RE.search(arg), _WORD_RE.search(text)
    if start is None or first is None:
        return None
    prefix = arg[start.start() :].rstrip()
    folded = ""
    for end in range(first.start(), len(text)):  # fold char by char to map back to the original
        folded += fold(text[end])
        if len(folded) >= len(prefix):
            return text[first.start() : end + 1] if folded.startswith(prefix) else None
    return None


def _has_pattern(text: str, args: Sequence[object]) -> str | None:
    match = re.search(str(args[0]), text, re.IGNORECASE)
    return match.group() if match else None


def _numbers(text: str) -> Iterator[tuple[str, Decimal]]:
    """Every number in `text`, in order, as (normalised string, value).

    A single "," or "." between digits is the decimal point ("1,5" == "1.5"), except when it
    is followed by exactly three digits after a 1-3 digit integer not starting with 0: then it
    groups thousands, as Spanish and English writers both mean by "1.000" / "1,000". Digits of
    any script read as their ASCII values first, so "٣,٥٠٠" groups like "3,500". A leading
    "." is a decimal point (".5" is 0.5).
    """
    if not text.isascii():  # "٣" -> "3": then one set of rules for every script
        text = _NON_ASCII_DIGIT_RE.sub(lambda d: str(unicodedata.decimal(d.group())), text)
    for m in _NUMBER_RE.finditer(text):
        if m["grouped"]:
            body = m["grouped"].replace(m["sep"], "").replace(",", ".")
        else:
            body = (m["plain"] or m["fraction"]).replace(",", ".")
        value = format(Decimal(body), "f")  # exact: converts any Unicode digits to ASCII
        if "." in value:
            value = value.rstrip("0").rstrip(".")
        if m["sign"] and value.strip("0") != "":
            value = "-" + value
        yield value, Decimal(value)


def _to_decimal(arg: object) -> Decimal | None:
    """A numeric case-test argument as Decimal; None for bools, NaN, infinities and junk."""
    if isinstance(arg, bool) or not isinstance(arg, int | float | str | Decimal):
        return None
    try:
        value = Decimal(repr(arg) if isinstance(arg, float) else str(arg).strip())
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def _number_test(pred: Callable[[Decimal, list[Decimal]], bool]) -> CaseFunc:
    """A test matching the first number in the text that satisfies `pred` (as RapidPro does)."""

    def test(text: str, args: Sequence[object]) -> str | None:
        bounds = [d for d in map(_to_decimal, args) if d is not None]
        return next((s for s, n in _numbers(text) if pred(n, bounds)), None)

    return test


def _has_email(text: str, args: Sequence[object]) -> str | None:
    for m in _EMAIL_RE.finditer(text):
        local, domain = m["local"].lstrip(_QUOTES), m["domain"].rstrip(".-")
        labels = domain.split(".")
        if (
            not 0 < len(local) <= 64
            or local.startswith(".")
            or local.endswith(".")
            or ".." in local
            or len(labels) < 2
            or not (labels[-1].isalpha() and len(labels[-1]) >= 2)
            or not all(
                0 < len(lb) <= 63 and lb.replace("-", "").isalnum() and "-" not in (lb[0], lb[-1])
                for lb in labels
            )
        ):
            continue
        return f"{local}@{domain}"
    return None


def _has_phone(text: str, args: Sequence[object]) -> str | None:
    for m in _PHONE_RE.finditer(text):
        if not _DATE_RE.fullmatch(m.group().lstrip("(")):  # "2026-12-25" is not a phone
            digits = "".join(c for c in m.group() if c.isdigit())
            return ("+" if m.group().startswith("+") else "") + digits
    return None


def _has_date(text: str, args: Sequence[object]) -> str | None:
    for m in _DATE_RE.finditer(text):
        y, mo, d = (m["y"], m["m"], m["d"]) if m["y"] else (m["y2"], m["m2"], m["d2"])
        try:
            return date(int(y), int(mo), int(d)).isoformat()
        except ValueError:  # 31/02, month 13, year 0000: keep looking
            continue
    return None


@dataclass(frozen=True)
class CaseTest:
    """A registered test: the function plus the shape of arguments it accepts."""

    func: CaseFunc
    kind: ArgKind


CASE_TESTS: Mapping[str, CaseTest] = MappingProxyType(
    {
        "has_text": CaseTest(_has_text, "none"),
        "has_any_word": CaseTest(_has_any_word, "words"),
        "has_all_words": CaseTest(_has_all_words, "words"),
        "has_phrase": CaseTest(_has_phrase, "phrase"),
        "has_only_phrase": CaseTest(_has_only_phrase, "phrase"),
        "has_beginning": CaseTest(_has_beginning, "phrase"),
        "has_pattern": CaseTest(_has_pattern, "pattern"),
        "has_number": CaseTest(_number_test(lambda n, b: True), "none"),
        "has_number_between": CaseTest(_number_test(lambda n, b: b[0] <= n <= b[1]), "range"),
        "has_number_lt": CaseTest(_number_test(lambda n, b: n < b[0]), "number"),
        "has_number_lte": CaseTest(_number_test(lambda n, b: n <= b[0]), "number"),
        "has_number_eq": CaseTest(_number_test(lambda n, b: n == b[0]), "number"),
        "has_number_gte": CaseTest(_number_test(lambda n, b: n >= b[0]), "number"),
        "has_number_gt": CaseTest(_number_test(lambda n, b: n > b[0]), "number"),
        "has_email": CaseTest(_has_email, "none"),
        "has_phone": CaseTest(_has_phone, "none"),
        "has_date": CaseTest(_has_date, "none"),
    }
)


def normalize_args(raw: object) -> list[object]:
    """The YAML value of a case key as an argument list (`has_email: true` means no arguments)."""
    if raw is None or raw is True:
        return []
    if isinstance(raw, list | tuple):
        return list(raw)
    return [raw]


def _arity(name: str, args: Sequence[object], n: int, noun: str) -> str | None:
    if len(args) == n:
        return None
    return f"{name} takes {n} {noun}{'' if n == 1 else 's'}, got {len(args)}"


def _check_numbers(name: str, args: Sequence[object], n: int) -> str | None:
    if error := _arity(name, args, n, "number"):
        return error
    values: list[Decimal] = []
    for i, arg in enumerate(args, 1):
        if (value := _to_decimal(arg)) is None:
            return f"{name}: argument {i} must be a number, got {arg!r}"
        values.append(value)
    if n == 2 and values[0] > values[1]:
        return f"{name}: min {args[0]} is greater than max {args[1]}"
    return None


def check_args(name: str, args: list[object]) -> str | None:
    """None if `name` is registered and `args` fit it, else a message for the flow author."""
    test = CASE_TESTS.get(name)
    if test is None:
        hint = difflib.get_close_matches(name, CASE_TESTS, n=1, cutoff=0.8)
        return f"unknown case test {name!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
    kind = test.kind
    if kind == "none":
        return None if not args else f"{name} takes no arguments, got {len(args)}"
    if kind in ("number", "range"):
        return _check_numbers(name, args, 1 if kind == "number" else 2)
    if kind == "words" and not args:
        return f"{name} takes at least 1 word, got 0"
    if kind != "words" and (error := _arity(name, args, 1, kind)):
        return error
    for i, arg in enumerate(args, 1):
        if isinstance(arg, bool) or not isinstance(arg, str | int):
            return f"{name}: argument {i} must be a string, got {arg!r}"
        if kind != "pattern" and not _tokens(str(arg)):
            return f"{name}: argument {i} ({arg!r}) contains no words"
    if kind == "pattern":
        if not str(args[0]):
            return f"{name}: empty pattern matches everything"
        try:
            re.compile(str(args[0]))
        except (re.error, OverflowError, RecursionError) as exc:
            return f"{name}: invalid regex: {exc}"
    return None


def evaluate(name: str, text: str, args: list[object]) -> str | None:
    """Run case test `name` on `text`: None for no match, else the value to store.

    Never raises because of `text`; raises ValueError for bad arguments, which the flow
    checker reports at load time (see check_args).
    """
    if _hashable(args):  # the types are part of the key: 1, 1.0 and True are equal keys
        error = _checked(name, tuple(args), tuple(type(a) for a in args))
    else:
        error = check_args(name, args)
    if error is not None:
        raise ValueError(error)
    return CASE_TESTS[name].func(text, args)


def _hashable(args: Sequence[object]) -> bool:
    return all(isinstance(a, str | int | float | bool | None) for a in args)


@functools.lru_cache(maxsize=1024)
def _checked(name: str, args: tuple[object, ...], types: tuple[type, ...]) -> str | None:
    """``check_args`` once per (test, arguments): they come from flow files, not from contacts."""
    return check_args(name, list(args))
