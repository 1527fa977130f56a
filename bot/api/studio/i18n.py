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


@cache
def catalog(lang: str) -> dict[str, str]:
    """Every translation of ``lang``, from all its files; a label translated two ways is a
    mistake that would show one of them at random, so it fails loudly."""
    words: dict[str, str] = {}
    folder = resources.files("bot.api.studio").joinpath("locale", lang)
    if not folder.is_dir():
        return words
    for item in sorted(folder.iterdir(), key=lambda f: f.name):
        if not item.name.endswith(".toml"):
            continue
        for english, said in tomllib.loads(item.read_text(encoding="utf-8")).items():
            if words.get(english, said) != said:
                raise ValueError(f"locale/{lang}/{item.name}: {english!r} translated twice")
            words[english] = said
    return words


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
