"""Webhook authenticity: Meta's ``X-Hub-Signature-256`` and the subscription challenge.

Both compare in constant time. Apart from parsing so that what decides whether a request is Meta's
can be read on its own.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping


def valid_signature(raw: bytes, header: str | None, app_secret: str) -> bool:
    """Check ``X-Hub-Signature-256`` (``sha256=<hex>``) over the raw body, in constant time."""
    if not header or not app_secret:
        return False
    scheme, sep, given = header.strip().partition("=")
    if scheme.lower() != "sha256" or not sep:
        return False
    expected = hmac.new(app_secret.encode(), raw, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), given.strip().lower().encode())


def verify_challenge(query: Mapping[str, str], verify_token: str) -> str | None:
    """The ``hub.challenge`` to echo (200, text/plain) when the GET is genuine, else None (403)."""
    if query.get("hub.mode") != "subscribe" or not verify_token:
        return None
    given = query.get("hub.verify_token", "")
    if not hmac.compare_digest(given.encode(), verify_token.encode()):
        return None
    return query.get("hub.challenge", "")
