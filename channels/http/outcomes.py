"""What became of one post to ``send_url``, as the worker's :class:`SendResult`; pure.

- 2xx: delivered;
- 408, 429, 5xx, a timeout or a connection error: transient; try again after a delay that
  doubles per attempt (``base``, 2x, 4x, ... up to :data:`MAX_DELAY`; a 429's or 503's
  ``Retry-After`` seconds win when longer). The worker gives up after its
  ``max_send_attempts`` and the message fails with the last error;
- any other answer (3xx, other 4xx) or a refused address: fails for good, with a reason a
  person can act on.

Errors are ``{"code", "kind", "message", "http_status"?}`` like the WhatsApp channel's
(``kind``: ``retry`` or ``never``).
"""

from __future__ import annotations

from channels.protocol import SendResult

MAX_DELAY = 900.0
RETRY_STATUSES = frozenset({408, 429})
SNIPPET = 200  # characters of the receiver's answer quoted in an error


def delay(base: float, attempt: int, retry_after: str | None = None) -> float:
    """Seconds before the next try; ``attempt`` is 1 for the first try."""
    wait = base * 2.0 ** max(0, attempt - 1)
    if retry_after and retry_after.strip().isdigit():
        wait = max(wait, float(retry_after.strip()))
    return min(MAX_DELAY, wait)


def answered(
    status: int,
    body: str,
    *,
    message_id: str,
    attempt: int,
    base: float,
    retry_after: str | None = None,
) -> SendResult:
    if 200 <= status < 300:
        return SendResult(True, external_id=message_id)
    quoted = " ".join(body.split())[:SNIPPET]
    said = f": {quoted}" if quoted else ""
    error = {"code": f"http_{status}", "http_status": status}
    if status in RETRY_STATUSES or status >= 500:
        return SendResult(
            False,
            error={
                **error,
                "kind": "retry",
                "message": f"the receiver answered HTTP {status}{said}",
            },
            retry_after=delay(base, attempt, retry_after),
        )
    if 300 <= status < 400:
        why = (
            f"send_url answered a redirect (HTTP {status}); redirects are not followed: "
            "set send_url to the final address"
        )
    else:
        why = f"the receiver refused the message with HTTP {status}{said}"
    return SendResult(False, error={**error, "kind": "never", "message": why})


def unreachable(code: str, detail: str, *, attempt: int, base: float) -> SendResult:
    """A timeout (``timeout``) or a connection error (``network_error``): try again."""
    return SendResult(
        False,
        error={"code": code, "kind": "retry", "message": detail},
        retry_after=delay(base, attempt),
    )


def refused(code: str, message: str) -> SendResult:
    """Fails for good before any request (a blocked address, a message we cannot carry)."""
    return SendResult(False, error={"code": code, "kind": "never", "message": message})
