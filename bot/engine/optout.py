"""Opt-out and opt-in words: a contact who writes STOP is never messaged by a start again.

Matching is on the whole message (case- and accent-insensitive, edge punctuation ignored), so
"stop" stops but "don't stop" does not. The words and confirmations are configurable per
language (``[contacts]`` in config.toml).
"""

from __future__ import annotations

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
_EDGE_PUNCTUATION = " \t\r\n.!¡?¿,;:\"'"


def _fold_word(text: str) -> str:
    return fold(text.strip(_EDGE_PUNCTUATION))


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
