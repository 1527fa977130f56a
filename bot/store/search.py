"""The contact search index: one sorted set of normalised words, read by prefix.

Every contact contributes one member per word of its name, per word of each field value, and
per URN (the digits of a phone number, with and without its country code; the words of any
other path): ``"<word> <uuid>"``, all
scores 0, so ``ZRANGEBYLEX`` over ``[word`` … ``(word\\xff`` lists the contacts having a word
that starts with ``word``, in word order, a page at a time, without reading any other contact.
Words are normalised the same way when indexed and when searched: accents dropped (NFKD, then
the combining marks removed), case folded, split on anything that is not a letter or a digit.

The members are written in the same script that writes the contact (create, the API's
compare-and-set update, the engine's commit, deletion), so the index never lags the record.
A search re-reads each candidate's record and recomputes its words, so a member that outlived
its word (an index rebuilt while contacts changed) is never shown, and a contact matching with
several words is shown once: at the first of them. Layout and cost in docs/redis.md.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from phonenumbers import COUNTRY_CODE_TO_REGION_CODE

from bot.store.base import StoreBase
from bot.store.keys import CONTACTS, SEARCH, SEARCH_BUILT, contact_key

WORD_LEN = 24  # longer words are indexed (and searched) by their first 24 characters
MAX_WORDS = 32  # a contact's words indexed at most (name and URNs first, then fields)
SEARCH_VERSION = "2"  # bump when the words change: a process starting rebuilds the index
_SPLIT = re.compile(r"[^\W_]+")
_NUMBER = re.compile(r"^[\d\s+().-]*\d[\d\s+().-]*$")


def words(text: str) -> list[str]:
    """``text`` as index words: accents dropped, case folded, split on non-alphanumerics."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return [w[:WORD_LEN] for w in _SPLIT.findall(plain)]


def urn_words(urn: str) -> list[str]:
    """A URN's words: a phone number's digits as one word (``whatsapp:+51987650201`` ->
    ``51987650201``) and, as people type it at home, without its country code
    (``987650201``); any other path's words."""
    _, _, path = urn.partition(":")
    if not _NUMBER.match(path):
        return words(path)
    digits = re.sub(r"\D", "", path)
    found = [digits[:WORD_LEN]]
    if path.startswith("+"):
        # country calling codes are a prefix code (1 to 3 digits): the first that is one
        for n in (1, 2, 3):
            if int(digits[:n] or 0) in COUNTRY_CODE_TO_REGION_CODE:
                if digits[n:]:
                    found.append(digits[n:][:WORD_LEN])
                break
    return found


def contact_words(contact: Mapping[str, Any]) -> list[str]:
    """Every word a contact is found by, once each, in the order they are kept."""
    found: list[str] = words(str(contact.get("name") or ""))
    for urn in contact.get("urns") or []:
        found += urn_words(str(urn))
    for value in (contact.get("fields") or {}).values():
        found += words(str(value))
    return list(dict.fromkeys(found))[:MAX_WORDS]


def members_of(contact: Mapping[str, Any]) -> list[str]:
    """A contact's members in the index."""
    return [f"{w} {contact['uuid']}" for w in contact_words(contact)]


def member_diff(
    before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
) -> tuple[list[str], list[str]]:
    """(members to remove, members to add) when a contact changes from ``before`` to ``after``."""
    old = set(members_of(before)) if before else set()
    new = members_of(after) if after else []
    return sorted(old - set(new)), [m for m in new if m not in old]


def query_words(q: str) -> list[str]:
    """What a search box's text looks for: a phone number typed with spaces, dashes or a plus
    is one word of digits; anything else its words."""
    if _NUMBER.match(q.strip()):
        return [re.sub(r"\D", "", q)[:WORD_LEN]]
    return list(dict.fromkeys(words(q)))


def matches(contact: Mapping[str, Any], wanted: Sequence[str], member: str) -> bool:
    """Whether the contact has a word starting with each of ``wanted`` and ``member`` (the
    index entry it was found at, by ``wanted[0]``) is the first of its entries that word finds,
    so that a contact is listed once however many of its words match."""
    own = contact_words(contact)
    if not all(any(w.startswith(q) for w in own) for q in wanted):
        return False
    first = min((w for w in own if w.startswith(wanted[0])), key=lambda w: w.encode())
    return member == f"{first} {contact['uuid']}"


def scan_order(wanted: Iterable[str]) -> list[str]:
    """The words of a query, the one the index is read by first: the longest (the fewest
    contacts start with it)."""
    return sorted(wanted, key=lambda w: -len(w.encode()))


class SearchStore(StoreBase):
    async def search_page(self, word: str, after: str | None, count: int) -> list[str]:
        """Up to ``count`` index members whose word starts with ``word``, after ``after``."""
        prefix = word.encode()
        low = b"(" + after.encode() if after else b"[" + prefix
        members = await self._r.zrangebylex(SEARCH, low, b"(" + prefix + b"\xff", 0, count)
        return [m.decode() for m in members]

    async def ensure_search_index(self, batch: int = 1000) -> int:
        """Build the index when it was never built (contacts made by a version without it) or
        its words changed; the number of contacts indexed (0 when it was in step)."""
        if (await self._r.get(SEARCH_BUILT) or b"").decode() == SEARCH_VERSION:
            return 0
        await self._r.delete(SEARCH)
        indexed, low = 0, "-"
        while True:
            entries = await self._r.zrangebylex(CONTACTS, low, "+", 0, batch)
            if not entries:
                break
            low = "(" + entries[-1].decode()
            cids = [e.decode().split("|", 1)[1] for e in entries]
            raws = await self._r.mget([contact_key(c, "contact") for c in cids])
            members: dict[str, int] = {}
            for raw in raws:
                if raw:
                    members.update(dict.fromkeys(members_of(json.loads(raw)), 0))
                    indexed += 1
            if members:
                await self._r.zadd(SEARCH, members)
        await self._r.set(SEARCH_BUILT, SEARCH_VERSION)
        return indexed
