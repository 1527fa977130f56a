"""Contact URNs for WhatsApp and the send target they map to.

A user is reached by phone number (``wa_id``, digits) or, for username users who hide it, by a
business-scoped user ID (BSUID, e.g. ``PE.40718236650194827731``). The URN says which:

- ``whatsapp:+51987650123``: a phone number, E.164 with ``+`` (sent as ``"to"``);
- ``whatsapp:bsuid:PE.40718236650194827731``: a BSUID, verbatim (sent as ``"recipient"``).

When both are known the phone URN is the primary one (Meta: send with ``to`` when the phone is
known); ``InboundMessage.urns`` lists both so a contact can carry both.
"""

from __future__ import annotations

import re

SCHEME = "whatsapp"
BSUID_PREFIX = "bsuid:"
_DIGITS = re.compile(r"^\d{4,20}$")
_BSUID = re.compile(r"^[A-Za-z]{2}\.[A-Za-z0-9.]+$")


def phone_urn(wa_id: str) -> str:
    digits = wa_id.removeprefix("+")
    if not _DIGITS.match(digits):
        raise ValueError(f"not a WhatsApp phone number: {wa_id!r}")
    return f"{SCHEME}:+{digits}"


def bsuid_urn(user_id: str) -> str:
    if not _BSUID.match(user_id):
        raise ValueError(f"not a business-scoped user ID: {user_id!r}")
    return f"{SCHEME}:{BSUID_PREFIX}{user_id}"


def urn_for(wa_id: str | None, user_id: str | None) -> str:
    """The contact's primary URN: the phone when known, else the BSUID."""
    if wa_id:
        return phone_urn(wa_id)
    if user_id:
        return bsuid_urn(user_id)
    raise ValueError("neither a phone number nor a BSUID")


def send_target(urn: str) -> dict[str, str]:
    """``{"to": "+<digits>"}`` for a phone URN, ``{"recipient": <bsuid>}`` for a BSUID URN."""
    scheme, sep, path = urn.partition(":")
    if scheme != SCHEME or not sep:
        raise ValueError(f"not a whatsapp URN: {urn!r}")
    if path.startswith(BSUID_PREFIX):
        user_id = path[len(BSUID_PREFIX) :]
        bsuid_urn(user_id)  # validates
        return {"recipient": user_id}
    digits = path.removeprefix("+")
    if not _DIGITS.match(digits):
        raise ValueError(f"not a whatsapp URN: {urn!r}")
    return {"to": f"+{digits}"}
