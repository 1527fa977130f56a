"""Opt-out and opt-in words: a contact who writes STOP is never messaged by a start again.

A stop word opts out only when it is the whole message: trimmed, case- and
accent-insensitive, punctuation, spaces and invisible characters at either end ignored
("¡BAJA!", "«stop»"), as Twilio and Meta apply it; "no quiero darme de baja" and "don't stop"
opt nobody out. And an answer that the waiting question has a case for goes to that case
(the engine asks first): "Cancelar" at a wait with ``has_any_word: [no, cancelar]`` is an
answer, not an opt-out. The words and confirmations are configurable per language
(``[contacts]`` in config.toml).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

from bot.flow.casetests import fold

STOP_WORDS = {
    "es": ("STOP", "PARAR", "BAJA", "CANCELAR", "DETENER", "ALTO"),
    "pt": ("STOP", "PARAR", "SAIR", "CANCELAR", "DESCADASTRAR"),
    "en": ("STOP", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "STOPALL"),
}
START_WORDS = {
    "es": ("ALTA", "START", "INICIAR"),
    "pt": ("VOLTAR", "START", "INICIAR"),
    "en": ("START", "UNSTOP", "SUBSCRIBE"),
}
STOP_CONFIRMATION = {
    "es": "Listo: no te enviaremos más mensajes. Escribe ALTA si quieres volver a recibirlos.",
    "pt": "Pronto: você não receberá mais mensagens. Envie VOLTAR se quiser recebê-las de novo.",
    "en": "Done: you will get no more messages from us. Send START to receive them again.",
}
START_CONFIRMATION = {
    "es": "Listo: volverás a recibir nuestros mensajes.",
    "pt": "Pronto: você voltará a receber nossas mensagens.",
    "en": "Done: you will receive our messages again.",
}


def _edge(char: str) -> bool:
    """Punctuation, separators, controls and invisible format characters (zero-width space)."""
    return char.isspace() or unicodedata.category(char)[0] in "PZC"


def _fold_word(text: str) -> str:
    start, end = 0, len(text)
    while start < end and _edge(text[start]):
        start += 1
    while end > start and _edge(text[end - 1]):
        end -= 1
    return fold(text[start:end])


@dataclass(frozen=True)
class OptOut:
    """Stop and start words (the whole message, case- and accent-insensitive) per language,
    and the confirmation sent once in the contact's language (else the word's)."""

    stop_words: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(STOP_WORDS))
    start_words: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(START_WORDS))
    stop_confirmation: dict[str, str] = field(default_factory=lambda: dict(STOP_CONFIRMATION))
    start_confirmation: dict[str, str] = field(default_factory=lambda: dict(START_CONFIRMATION))

    _stop: dict[str, str] = field(init=False, repr=False, compare=False)
    _start: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for attr, words in (("_stop", self.stop_words), ("_start", self.start_words)):
            folded: dict[str, str] = {}
            for language, items in words.items():
                for word in items:
                    folded.setdefault(_fold_word(word), language)
            object.__setattr__(self, attr, folded)

    def stop_word(self, text: str) -> str | None:
        """The language of the stop word ``text`` is (as a whole message), else None."""
        return self._stop.get(_fold_word(text)) if text and len(text) <= 40 else None

    def match(self, text: str) -> tuple[str, str] | None:
        """("stop" | "start", language of the word) when the message is one of the words."""
        if not text or len(text) > 40:
            return None
        word = _fold_word(text)
        if word in self._stop:
            return "stop", self._stop[word]
        if word in self._start:
            return "start", self._start[word]
        return None
