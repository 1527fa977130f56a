"""What to do about a Bot API answer (pure): a :class:`SendResult` the core's sender acts on.

Telegram answers ``{"ok": false, "error_code": N, "description": "...", "parameters": {...}}``;
its codes follow HTTP, and the description says the rest. The classes:

- 403 (blocked by the user, never started the bot): failed for good as ``contact_unreachable``
  (a bot may only write to whoever wrote to it first and has not blocked it); so is a 400
  ``chat not found`` / ``user not found`` / ``PEER_ID_INVALID`` (the address reaches nobody);
- another 400: failed for good as ``invalid_request`` (``media_invalid`` for a file Telegram
  could not fetch): the message itself is wrong;
- 401 or 404: the token is wrong or revoked: held ``CREDENTIALS_RETRY`` seconds as
  ``bot_token_invalid`` (an operator fixes it; the channel's health says so meanwhile);
- 429: retried after ``parameters.retry_after`` (flood control: Telegram says how long);
- 5xx, a timeout, a lost connection: retried with backoff (2 s, 4 s, 8 s ... at most 15 min);
- anything else: failed for good as ``telegram_<code>``.

A retried message keeps its place first in the contact's line; after the sender's attempts it
fails with the last error. Each error carries a human ``message`` (a start's failures show it).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from channels.protocol import SendResult

CREDENTIALS_RETRY = 300.0
BACKOFF_BASE, BACKOFF_MAX = 2.0, 900.0
RATE_LIMITED_DEFAULT = 5.0  # a 429 without parameters.retry_after
UNREACHABLE_400 = ("chat not found", "user not found", "peer_id_invalid", "user is deactivated")
MEDIA_400 = ("wrong file identifier", "failed to get http url content", "wrong type of the web")
UNREACHABLE = (
    "Telegram will not deliver to this contact: they blocked the bot, or never started a chat "
    "with it"
)


def backoff(attempt: int) -> float:
    """2 s for the first retry, doubling per attempt, at most 15 minutes."""
    return min(BACKOFF_MAX, BACKOFF_BASE * 2.0 ** max(0, attempt))


def classify(status: int, body: Any, *, attempt: int = 0) -> SendResult:
    """A non-ok answer (``status`` the HTTP status, ``body`` the JSON or None)."""
    data = body if isinstance(body, dict) else {}
    code = data.get("error_code") if isinstance(data.get("error_code"), int) else status
    description = str(data.get("description") or f"HTTP {status}")
    lowered = description.lower()
    error: dict[str, Any] = {"http_status": status, "description": description}
    if code == 403 or (code == 400 and any(s in lowered for s in UNREACHABLE_400)):
        return _failed("contact_unreachable", f"{UNREACHABLE} ({description})", error)
    if code == 429:
        parameters = data.get("parameters")
        after = parameters.get("retry_after") if isinstance(parameters, dict) else None
        wait = float(after) if isinstance(after, int | float) and after > 0 else None
        message = f"Telegram asks to slow down ({description})"
        return _retry("rate_limited", message, error, wait or RATE_LIMITED_DEFAULT)
    if code in (401, 404):
        message = f"Telegram refused the bot token: check bot_token ({description})"
        return _retry("bot_token_invalid", message, error, CREDENTIALS_RETRY, kind="credentials")
    if status >= 500 or (isinstance(code, int) and code >= 500):
        message = f"Telegram is unavailable ({description})"
        return _retry("telegram_unavailable", message, error, backoff(attempt))
    if code == 400:
        reason = "media_invalid" if any(s in lowered for s in MEDIA_400) else "invalid_request"
        return _failed(reason, f"Telegram refused the message ({description})", error)
    return _failed(f"telegram_{code}", f"Telegram refused the message ({description})", error)


def classify_exception(exc: BaseException, *, attempt: int = 0) -> SendResult:
    """No answer at all: a timeout or a lost connection, retried with backoff."""
    if isinstance(exc, TimeoutError | asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        reason, message = "timeout", "Telegram did not answer in time"
    else:
        reason, message = "network_error", f"could not reach Telegram ({type(exc).__name__})"
    return _retry(reason, message, {}, backoff(attempt))


def _failed(code: str, message: str, extra: dict[str, Any]) -> SendResult:
    return SendResult(False, error={"code": code, "message": message, "kind": "never", **extra})


def _retry(
    code: str, message: str, extra: dict[str, Any], after: float, *, kind: str = "retry"
) -> SendResult:
    error = {"code": code, "message": message, "kind": kind, **extra}
    return SendResult(False, error=error, retry_after=after)
