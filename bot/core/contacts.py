"""The contact domain rules: URN schemes and their stored form, statuses, language codes, field
keys, group names and a new contact's record.

No HTTP here, so that the admin API (``bot/api/contacts.py``), the CSV import
(``bot/work/contacts_import.py``) and the CLI apply the same rules and say the same messages.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import phonenumbers

STATUSES = ("active", "opted_out", "blocked")
PHONE_SCHEMES = ("whatsapp", "tel")
SCHEMES = ("whatsapp", "tel", "telegram", "ext", "console")
LANGUAGE = re.compile(r"^[a-z]{2,3}([_-][A-Za-z0-9]{2,8})?$")
FIELD_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# C0, DEL, C1 (Unicode "Cc": NUL, tab, line breaks, ESC...) and the line/paragraph separators. Not
# format characters: the zero-width joiner holds emoji sequences together.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# an ``ext:`` path: another system's id for the contact (channels/http/payloads.py checks the
# same): 1 to 128 characters, no whitespace, no control characters
EXT_PATH = re.compile(r"[^\s\x00-\x1f\x7f-\x9f\u2028\u2029]{1,128}")


class UrnError(ValueError):
    pass


def normalize_urn(urn: str) -> str:
    """The URN in its stored form: phone schemes in E.164 (``whatsapp:+5511...``), others as
    given. Raises :class:`UrnError` with a message fit for the person who typed it."""
    scheme, sep, path = urn.strip().partition(":")
    scheme, path = scheme.lower(), path.strip()
    if not sep or not path:
        raise UrnError(f"{urn!r} is not a URN: write scheme:path, e.g. whatsapp:+5511987654321")
    if scheme not in SCHEMES:
        raise UrnError(f"unknown URN scheme {scheme!r}: use one of {', '.join(SCHEMES)}")
    if scheme == "whatsapp" and path.startswith("bsuid:"):
        if not re.match(r"^bsuid:[A-Za-z]{2}\.[A-Za-z0-9.]+$", path):
            raise UrnError(f"{urn!r}: not a WhatsApp business-scoped user id")
        return f"whatsapp:{path}"
    if scheme in PHONE_SCHEMES:
        digits = re.sub(r"[\s().-]", "", path)
        if not digits.startswith("+"):
            digits = "+" + digits.removeprefix("00")
        try:
            number = phonenumbers.parse(digits, None)
        except phonenumbers.NumberParseException:
            number = None
        if number is None or not phonenumbers.is_valid_number(number):
            raise UrnError(
                f"{urn!r}: not a valid phone number; give it in international form with the "
                "country code, e.g. +5511987654321"
            )
        return f"{scheme}:" + phonenumbers.format_number(
            number, phonenumbers.PhoneNumberFormat.E164
        )
    if scheme == "telegram" and not path.isdigit():
        raise UrnError(f"{urn!r}: a telegram URN is the numeric chat id, e.g. telegram:123456")
    if scheme == "ext" and not EXT_PATH.fullmatch(path):
        raise UrnError(
            f"{urn!r}: an ext URN is another system's id, 1 to 128 characters without spaces"
        )
    return f"{scheme}:{path}"


def urns_problem(urns: list[str]) -> str | None:
    """What is wrong with these (stored-form) URNs as one contact's, or None: at least one, and
    one per scheme, so that each channel type reaches the contact at one address."""
    if not urns:
        return "a contact has at least one URN"
    seen: dict[str, str] = {}
    for urn in urns:
        scheme = urn.split(":", 1)[0]
        if scheme in seen:
            return f"one URN per scheme: {seen[scheme]} and {urn} are both {scheme}:"
        seen[scheme] = urn
    return None


def name_problem(value: str) -> str | None:
    """What is wrong with ``value`` as a contact's or a group's name; None if fine."""
    if CONTROL.search(value):
        return "a name holds no control characters (line breaks, tabs, NUL, escapes)"
    return None


def group_name_problem(value: Any) -> str | None:
    """What is wrong with ``value`` as a group name, for the person who typed it; None if fine."""
    if not isinstance(value, str) or not value.strip() or len(value) > 64 or value != value.strip():
        return "a group name is 1 to 64 characters, no leading/trailing spaces"
    return name_problem(value)


def new_record(urn: str, now: float) -> dict[str, Any]:
    """A new contact with one URN, as the store keeps it."""
    return {
        "uuid": str(uuid.uuid4()),
        "name": "",
        "urns": [urn],
        "fields": {},
        "groups": [],
        "status": "active",
        "created_on": now,
    }
