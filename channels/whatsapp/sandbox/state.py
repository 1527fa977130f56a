"""All of the sandbox's state, in memory: it plays Meta, whose state we never persist.

A restart forgets windows, sends and templates created at run time (the seed comes back), just
as a fresh Meta test account would. Bounded where a benchmark could grow it without end.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from channels.whatsapp.sandbox.chats import Chats
from channels.whatsapp.sandbox.config import SandboxConfig, SandboxNumber
from channels.whatsapp.sandbox.templates import TemplateStore, demo_templates
from channels.whatsapp.sandbox.validate import Send

WINDOW = 24 * 3600
PAIR_CAPACITY = 45.0
PAIR_RATE = 1 / 6.0
FAULTS = ("duplicate", "read_before_sent", "skip_delivered", "omit_context", "bsuid_only")


@dataclass
class ErrorRule:
    """An injected error: the next ``times`` sends matching ``match`` fail with ``code``."""

    code: int
    mode: str = "sync"  # "sync": the error answers the send; "async": 200, then `failed`
    http_status: int = 400
    to: str | None = None  # digits
    type: str | None = None
    template: str | None = None
    times: int | None = 1  # None: every matching send
    details: str | None = None

    def matches(self, send: Send) -> bool:
        return (
            (self.to is None or self.to == send.wa_id or self.to == send.user_id)
            and (self.type is None or self.type == send.type)
            and (self.template is None or (send.template and send.template.name == self.template))
        ) is True

    def public(self) -> dict[str, Any]:
        return {
            "match": {
                k: v
                for k, v in (("to", self.to), ("type", self.type), ("template", self.template))
                if v is not None
            },
            "code": self.code,
            "http_status": self.http_status,
            "mode": self.mode,
            "times": self.times,
        }


@dataclass
class Media:
    mime_type: str
    content: bytes
    sha256: str  # base64, as in webhooks


@dataclass
class SandboxState:
    config: SandboxConfig
    offset: float = 0.0  # the fake clock is config.clock() + offset
    templates: TemplateStore = field(default_factory=TemplateStore)
    windows: dict[tuple[str, str], float] = field(default_factory=dict)  # (number, user) -> ts
    wa_ids: dict[str, str] = field(default_factory=dict)  # BSUID -> wa_id, from inbound
    inbound_ids: set[str] = field(default_factory=set)
    rules: list[ErrorRule] = field(default_factory=list)
    faults: dict[str, int] = field(default_factory=dict)
    sent: deque[dict[str, Any]] = field(default_factory=deque)
    # Accepted outbound messages by wamid (for taps on them), bounded by record_limit * 10.
    messages: dict[str, Send] = field(default_factory=dict)
    last_out: dict[tuple[str, str], str] = field(default_factory=dict)  # (number, user) -> wamid
    media: dict[str, Media] = field(default_factory=dict)
    throughput: dict[str, tuple[float, float]] = field(default_factory=dict)
    pairs: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)
    # Scripted outcomes of template reviews, by template name: (status, reason).
    reviews: dict[str, tuple[str, str]] = field(default_factory=dict)
    chats: Chats = field(default_factory=Chats)  # what the sandbox phone shows
    numbers: dict[str, SandboxNumber] = field(init=False)
    _counter: int = 0
    _epoch: str = ""

    def __post_init__(self) -> None:
        self.numbers = {n.phone_number_id: n for n in self.config.numbers}
        self.sent = deque(maxlen=self.config.record_limit)
        self._epoch = format(int(time.time() * 1000), "x")
        self.seed_templates()

    def seed_templates(self) -> None:
        seed = self.config.templates if self.config.templates is not None else demo_templates()
        self.templates = TemplateStore()
        self.templates.seed(seed)

    def reset(self) -> None:
        """Forget everything but the configuration and the ID counter (IDs stay fresh)."""
        self.offset = 0.0
        self.seed_templates()
        for bag in (
            self.windows,
            self.wa_ids,
            self.faults,
            self.messages,
            self.last_out,
            self.media,
            self.throughput,
            self.pairs,
            self.reviews,
        ):
            bag.clear()
        self.inbound_ids.clear()
        self.chats.clear()
        self.rules.clear()
        self.sent.clear()

    # -- clock -----------------------------------------------------------------------------

    def now(self) -> float:
        return self.config.clock() + self.offset

    def set_clock(self, *, advance: float | None = None, at: float | None = None) -> float:
        if advance is not None:
            self.offset += advance
        if at is not None:
            self.offset = at - self.config.clock()
        return self.now()

    # -- IDs ---------------------------------------------------------------------------------

    def new_wamid(self, kind: str = "OUT") -> str:
        """``wamid.`` + base64 of a counter: sequential, and fresh across restarts."""
        self._counter += 1
        raw = f"SANDBOX.{kind}.{self._epoch}.{self._counter:010d}".encode()
        return "wamid." + base64.b64encode(raw).decode()

    def new_media_id(self) -> str:
        self._counter += 1
        return str(9930117744000000 + self._counter)

    def add_media(self, mime_type: str, content: bytes) -> str:
        media_id = self.new_media_id()
        digest = base64.b64encode(hashlib.sha256(content).digest()).decode()
        self.media[media_id] = Media(mime_type, content, digest)
        return media_id

    # -- the 24-hour window -------------------------------------------------------------------

    def user_keys(self, wa_id: str | None, user_id: str | None) -> list[str]:
        keys = [k for k in (wa_id, user_id) if k]
        if wa_id is None and user_id is not None and user_id in self.wa_ids:
            keys.append(self.wa_ids[user_id])
        return keys

    def open_window(self, number: str, wa_id: str | None, user_id: str | None, ts: float) -> None:
        if wa_id and user_id:
            self.wa_ids[user_id] = wa_id
        for key in self.user_keys(wa_id, user_id):
            if ts > self.windows.get((number, key), 0.0):
                self.windows[(number, key)] = ts

    def window_open(self, number: str, send: Send, now: float) -> bool:
        for key in self.user_keys(send.wa_id, send.user_id):
            last = self.windows.get((number, key))
            if last is not None and last + WINDOW > now:
                return True
        return False

    # -- buckets ---------------------------------------------------------------------------------

    def take_throughput(self, number: str, now: float) -> bool:
        mps = self.config.max_mps
        if mps <= 0:
            return True
        tokens, last = self.throughput.get(number, (mps, now))
        tokens = min(mps, tokens + max(0.0, now - last) * mps)
        if tokens < 1.0:
            self.throughput[number] = (tokens, now)
            return False
        self.throughput[number] = (tokens - 1.0, now)
        return True

    def take_pair(self, number: str, user: str, now: float) -> bool:
        if not self.config.pair_rate:
            return True
        key = (number, user)
        tokens, last = self.pairs.get(key, (PAIR_CAPACITY, now))
        tokens = min(PAIR_CAPACITY, tokens + max(0.0, now - last) * PAIR_RATE)
        if tokens < 1.0:
            self.pairs[key] = (tokens, now)
            return False
        self.pairs[key] = (tokens - 1.0, now)
        if len(self.pairs) > 200_000:  # drop buckets that have refilled anyway
            full = PAIR_CAPACITY / PAIR_RATE
            self.pairs = {k: v for k, v in self.pairs.items() if now - v[1] < full}
        return True

    # -- injected errors and webhook faults ------------------------------------------------------

    def take_rule(self, send: Send) -> ErrorRule | None:
        for rule in self.rules:
            if rule.matches(send):
                if rule.times is not None:
                    rule.times -= 1
                    if rule.times <= 0:
                        self.rules.remove(rule)
                return rule
        return None

    def take_fault(self, name: str) -> bool:
        left = self.faults.get(name, 0)
        if left <= 0:
            return False
        self.faults[name] = left - 1
        return True

    # -- records ---------------------------------------------------------------------------------

    def remember(self, wamid: str, number: str, send: Send) -> None:
        self.messages[wamid] = send
        self.last_out[(number, send.key)] = wamid
        if len(self.messages) > self.config.record_limit * 10:
            del self.messages[next(iter(self.messages))]
