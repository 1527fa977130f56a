"""The Standard Webhooks signature, both ways: sign what we post, verify what we are posted.

Three headers travel with every body: ``webhook-id`` (the idempotency key: the same on every
retry of one event), ``webhook-timestamp`` (Unix seconds when this attempt was signed) and
``webhook-signature`` (one or more space-separated ``v1,<base64>`` entries, several while a
secret is rotated). Each entry is the base64 HMAC-SHA256, keyed with the secret (``whsec_``
then base64: the key is the decoded part), of ``{id}.{timestamp}.{raw body}``.

Pure: no I/O, the clock is an argument. A refusal is a :class:`SignatureError` whose ``code``
names what was wrong (the header at fault, a stale timestamp, no matching signature).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping

PREFIX = "whsec_"
MIN_KEY_BYTES = 24  # the standard asks for 24 to 64 random bytes
MAX_KEY_BYTES = 64
TOLERANCE = 300  # seconds a timestamp may be away from our clock, either way
ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER = (
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
)
# visible ASCII, no spaces: the id goes into the signed content and a Redis key
WEBHOOK_ID = re.compile(r"[\x21-\x7e]{1,256}")
TIMESTAMP = re.compile(r"[0-9]{1,12}")
MAX_SIGNATURES = 16  # entries in one header; more is not a rotation, it is someone guessing


class SignatureError(Exception):
    """Not a genuine delivery: ``code`` is stable, the message says what to fix."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_...`` secret; ValueError (never quoting it) when malformed."""
    if not secret.startswith(PREFIX):
        raise ValueError(f"must start with {PREFIX} followed by base64")
    try:
        key = base64.b64decode(secret[len(PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"the part after {PREFIX} is not valid base64") from None
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise ValueError(
            f"the key after {PREFIX} must decode to {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes "
            f"(it has {len(key)}); make one with "
            "`python3 -c \"import base64, os; print('whsec_' + "
            'base64.b64encode(os.urandom(32)).decode())"`'
        )
    return key


def signature(key: bytes, webhook_id: str, timestamp: int | str, body: bytes) -> str:
    """The ``v1,<base64>`` entry for one delivery."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def sign(key: bytes, webhook_id: str, body: bytes, now: float) -> dict[str, str]:
    """The three headers of one delivery attempt, signed at ``now``."""
    timestamp = int(now)
    return {
        ID_HEADER: webhook_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(key, webhook_id, timestamp, body),
    }


def verify(
    key: bytes,
    headers: Mapping[str, str],
    body: bytes,
    now: float,
    tolerance: int = TOLERANCE,
) -> tuple[str, int]:
    """``(webhook id, timestamp)`` of a genuine delivery; else raise :class:`SignatureError`.

    ``headers`` is looked up by the lower-case names (aiohttp's are case-insensitive)."""
    webhook_id = _header(headers, ID_HEADER)
    stamp = _header(headers, TIMESTAMP_HEADER)
    given = _header(headers, SIGNATURE_HEADER)
    if not WEBHOOK_ID.fullmatch(webhook_id):
        raise SignatureError(
            "invalid_webhook_id", f"{ID_HEADER} is 1 to 256 visible ASCII characters, no spaces"
        )
    if not TIMESTAMP.fullmatch(stamp):
        raise SignatureError(
            "invalid_webhook_timestamp", f"{TIMESTAMP_HEADER} is an integer of Unix seconds"
        )
    timestamp = int(stamp)
    if timestamp < now - tolerance:
        raise SignatureError(
            "stale_timestamp",
            f"{TIMESTAMP_HEADER} is more than {tolerance} s old: sign each attempt afresh",
        )
    if timestamp > now + tolerance:
        raise SignatureError(
            "future_timestamp",
            f"{TIMESTAMP_HEADER} is more than {tolerance} s ahead of our clock",
        )
    expected = signature(key, webhook_id, stamp, body).encode()
    matched = False
    for entry in given.split()[:MAX_SIGNATURES]:
        # every entry is compared (no early exit), each in constant time
        matched |= entry.startswith("v1,") and hmac.compare_digest(
            expected, entry.encode("utf-8", "replace")
        )
    if not matched:
        raise SignatureError(
            "bad_signature", f"no v1 entry of {SIGNATURE_HEADER} matches this body and secret"
        )
    return webhook_id, timestamp


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if not value or not value.strip():
        raise SignatureError(f"missing_{name.replace('-', '_')}", f"the {name} header is required")
    return value.strip()
