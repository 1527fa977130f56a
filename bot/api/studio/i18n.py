"""Studio's languages: pages are written in English, each label passed through ``_``; the
other languages' words live in ``locale/<lang>/<area>.toml`` (flat ``"English" =
"translation"``), one file per area of Studio so that each page's author keeps their own.

Why not gettext: .po/.mo files need a compile step and a tool; a dict per language read once is
all a few hundred labels need, and a test checks every label has its Spanish."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from functools import cache
from importlib import resources

LANGUAGES = ("en", "es", "pt")
DEFAULT = "en"

Translate = Callable[..., str]


def _files(lang: str) -> list[tuple[str, dict[str, str]]]:
    """(file name, its translations) of ``lang``, in name order."""
    folder = resources.files("bot.api.studio").joinpath("locale", lang)
    if not folder.is_dir():
        return []
    return [
        (item.name, tomllib.loads(item.read_text(encoding="utf-8")))
        for item in sorted(folder.iterdir(), key=lambda f: f.name)
        if item.name.endswith(".toml")
    ]


@cache
def catalog(lang: str) -> dict[str, str]:
    """Every translation of ``lang``, from all its files. A label two files translate two ways
    keeps the first file's (never an error at run time: a page must not break over a word);
    :func:`conflicts` lists them, and a test keeps that list empty."""
    words: dict[str, str] = {}
    for _, found in _files(lang):
        for english, said in found.items():
            words.setdefault(english, said)
    return words


def conflicts(lang: str) -> list[str]:
    """Labels of ``lang`` translated two ways in two files, saying where."""
    first: dict[str, tuple[str, str]] = {}
    found = []
    for name, words in _files(lang):
        for english, said in words.items():
            where, before = first.setdefault(english, (name, said))
            if before != said:
                found.append(
                    f"locale/{lang}: {english!r} is {before!r} in {where}, {said!r} in {name}"
                )
    return found


def translator(lang: str) -> Translate:
    """``_(english, **values)``: the label in ``lang`` (English when it has none), with
    ``{name}`` placeholders filled from ``values``."""
    words = catalog(lang)

    def translate(english: str, **values: object) -> str:
        said = words.get(english, english)
        return said.format(**values) if values else said

    return translate


def language(setting: str, accept_language: str) -> str:
    """The configured language, or (``auto``) the browser's most wanted one Studio has."""
    if setting != "auto":
        return setting
    wanted: list[tuple[float, int, str]] = []
    for n, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES and quality > 0:
            wanted.append((-quality, n, primary))
    return min(wanted)[2] if wanted else DEFAULT
