"""What to do about a failed WhatsApp send: classify Graph errors by their ``code``.

The table follows the reference's "Error codes and retry classes" (section 7). Its six classes
collapse into four kinds the sender acts on:

- ``retry``: transient (BACKOFF): try again after ``retry_after`` seconds, growing per attempt;
- ``retry_recipient``: throttled for this recipient only (RECIPIENT_LATER, 131056): delay this
  contact's queue, keep sending to others;
- ``never``: permanent for this message (NEVER, NEEDS_TEMPLATE, WAIT_24H): fail it and report
  ``reason`` to the flow; ``hint`` says what could help (``needs_template``, ``wait_24h``, ...);
- ``credentials``: token, permission or account setup (FIX_CREDENTIALS): pause the channel's
  sender and alert an operator.

Unknown codes are ``never`` (``known=False``: log them loudly), unless Graph marks the error
``is_transient``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp

from channels.whatsapp.inbound import error_detail
from channels.whatsapp.inbound_records import ErrorDetail, StatusUpdate

Kind = Literal["retry", "retry_recipient", "never", "credentials"]
MAX_RETRY_AFTER = 900.0


@dataclass(frozen=True, slots=True)
class Rule:
    kind: Kind
    reason: str  # stable machine-readable code reported to flows and logs
    retry_after: float | None = None  # base delay in seconds for retry kinds
    max_attempts: int | None = None  # "few attempts" codes
    hint: str | None = None


def _r(kind: Kind, reason: str, after: float | None = None, **kw: Any) -> Rule:
    return Rule(kind, reason, after, **kw)


RULES: dict[int, Rule] = {
    0: _r("credentials", "auth_failed"),
    1: _r("retry", "graph_error", 5, max_attempts=3),
    2: _r("retry", "service_unavailable", 10),
    3: _r("credentials", "capability_missing"),
    4: _r("retry", "app_rate_limited", 60),
    10: _r("credentials", "permission_denied"),
    100: _r("never", "invalid_parameter"),
    190: _r("credentials", "access_token_invalid"),
    368: _r("credentials", "account_restricted", hint="alert_operator"),
    80007: _r("retry", "waba_rate_limited", 60),
    130429: _r("retry", "throughput_limited", 1),
    130472: _r("never", "user_in_experiment"),
    131000: _r("retry", "unknown_error", 5, max_attempts=3),
    131005: _r("credentials", "permission_denied"),
    131008: _r("never", "parameter_missing"),
    131009: _r("never", "parameter_invalid"),
    131016: _r("retry", "service_unavailable", 10),
    131021: _r("never", "recipient_is_sender"),
    131026: _r("never", "undeliverable", hint="mark_unreachable"),
    131030: _r("never", "recipient_not_allowed"),
    131031: _r("credentials", "account_locked"),
    131042: _r("credentials", "payment_problem", hint="alert_operator"),
    131047: _r("never", "outside_24h_window", hint="needs_template"),
    131048: _r("retry", "spam_rate_limited", 600, hint="pause_bulk"),
    131049: _r("never", "marketing_capped", hint="wait_24h"),
    131050: _r("never", "marketing_opt_out", hint="no_marketing"),
    131051: _r("never", "unsupported_message_type"),
    131052: _r("never", "media_download_failed", hint="ask_resend"),
    131053: _r("never", "media_upload_failed", hint="fix_media"),
    131056: _r("retry_recipient", "pair_rate_limited", 1),
    131057: _r("retry", "maintenance", 60),
    131062: _r("never", "bsuid_not_supported", hint="use_phone_number"),
    131063: _r("never", "marketing_disabled"),
    131064: _r("never", "limit_reduced"),
    132000: _r("never", "template_params_mismatch"),
    132001: _r("never", "template_not_found", hint="resync_templates"),
    132005: _r("never", "template_text_too_long"),
    132007: _r("never", "template_policy_violation"),
    132012: _r("never", "template_param_format"),
    132015: _r("never", "template_paused", hint="use_other_template"),
    132016: _r("never", "template_disabled", hint="use_other_template"),
    133004: _r("retry", "service_unavailable", 10),
    133010: _r("credentials", "phone_not_registered"),
    135000: _r("never", "invalid_parameter"),
    137000: _r("never", "identity_key_mismatch"),
}
PERMISSION_RANGE = range(200, 300)  # 200-299: permission missing
_PERMISSION = _r("credentials", "permission_denied")
_TIMEOUT = _r("retry", "timeout", 5)
_NETWORK = _r("retry", "network_error", 5)
_HTTP_429 = _r("retry", "http_429", 10)
_HTTP_5XX = _r("retry", "http_5xx", 5)


@dataclass(frozen=True, slots=True)
class ErrorClass:
    kind: Kind
    reason: str
    code: int | None = None  # Graph error code, None for transport/HTTP-only failures
    title: str | None = None
    message: str | None = None
    details: str | None = None
    retry_after: float | None = None  # suggested delay before the next try (retry kinds)
    max_attempts: int | None = None
    hint: str | None = None
    http_status: int | None = None
    known: bool = True  # False: a code missing from the table; log it loudly

    @property
    def retryable(self) -> bool:
        return self.kind in ("retry", "retry_recipient")

    def as_error(self) -> dict[str, Any]:
        """The ``error`` dict of a ``SendResult``: ``code`` is the stable reason."""
        out: dict[str, Any] = {"code": self.reason, "kind": self.kind}
        text = self.details or self.message or self.title
        if text:
            out["message"] = text
        for key in ("code", "title", "hint", "http_status"):
            value = getattr(self, key)
            if value is not None:
                out["whatsapp_code" if key == "code" else key] = value
        return out


def _delay(rule: Rule, attempt: int) -> float | None:
    """Base delay grown per attempt: ×2 for backoff, 4^n for a recipient (1, 4, 16, 64 s)."""
    if rule.retry_after is None:
        return None
    n = max(0, attempt)
    if rule.kind == "retry_recipient":
        return min(MAX_RETRY_AFTER, rule.retry_after * 4.0**n)
    return min(MAX_RETRY_AFTER, max(rule.retry_after, rule.retry_after * 2.0**n))


def _graph_error(body: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The error object of a response body (``{"error": {...}}``) or a status ``errors[]`` item."""
    if not isinstance(body, Mapping):
        return None
    inner = body.get("error")
    if isinstance(inner, Mapping):
        return inner
    if "code" in body:
        return body
    return None


def _title_of(err: Mapping[str, Any], code: int | None) -> str | None:
    for key in ("title", "error_user_title"):
        if isinstance(err.get(key), str) and err[key]:
            return str(err[key])
    message = err.get("message")
    if isinstance(message, str) and code is not None:
        prefix = f"(#{code}) "
        if message.startswith(prefix):
            return message[len(prefix) :]
    return None


def rule_for(code: int) -> Rule | None:
    if code in RULES:
        return RULES[code]
    if code in PERMISSION_RANGE:
        return _PERMISSION
    return None


def classify_error(
    http_status: int | None,
    body: Mapping[str, Any] | None,
    exc: BaseException | None = None,
    *,
    attempt: int = 0,
) -> ErrorClass:
    """Classify one failed send (a non-2xx answer, a ``failed`` status's error, or an exception).

    ``attempt`` (0 for the first retry) grows the suggested ``retry_after``.
    """
    err = _graph_error(body)
    if err is not None:
        detail = error_detail(err)
        code = detail.code
        if code is not None:
            rule = rule_for(code)
            known = rule is not None
            if rule is None:
                transient = err.get("is_transient") is True
                rule = _r("retry", f"whatsapp_{code}", 5, max_attempts=3) if transient else None
                rule = rule or _r("never", f"whatsapp_{code}")
            return ErrorClass(
                kind=rule.kind,
                reason=rule.reason,
                code=code,
                title=_title_of(err, code),
                message=detail.message,
                details=detail.details,
                retry_after=_delay(rule, attempt),
                max_attempts=rule.max_attempts,
                hint=rule.hint,
                http_status=http_status,
                known=known,
            )
    message = None
    if exc is not None:
        message = f"{type(exc).__name__}: {exc}".rstrip(": ")
        if isinstance(exc, TimeoutError | asyncio.TimeoutError | aiohttp.ServerTimeoutError):
            rule = _TIMEOUT
        elif isinstance(exc, aiohttp.ClientError | ConnectionError | OSError):
            rule = _NETWORK
        else:
            rule = _r("never", "client_error")
    elif http_status == 429:
        rule = _HTTP_429
    elif http_status is not None and http_status >= 500:
        rule = _HTTP_5XX
    elif http_status in (401, 403):
        rule = _r("credentials", f"http_{http_status}")
    elif http_status is not None:
        rule = _r("never", f"http_{http_status}")
    else:
        rule = _r("never", "unknown_failure")
    return ErrorClass(
        kind=rule.kind,
        reason=rule.reason,
        message=message,
        retry_after=_delay(rule, attempt),
        max_attempts=rule.max_attempts,
        http_status=http_status,
    )


def classify_detail(detail: ErrorDetail) -> ErrorClass:
    """Classify an ``ErrorDetail`` (e.g. from a webhook's ``errors[]``)."""
    body: dict[str, Any] = {"code": detail.code, "title": detail.title, "message": detail.message}
    if detail.details:
        body["error_data"] = {"details": detail.details}
    if detail.code is None:
        return classify_error(None, None)
    return classify_error(None, body)


def classify_failed_status(status: StatusUpdate) -> ErrorClass:
    """Classify an asynchronous ``failed`` status by its first error (131047 → needs template)."""
    if status.errors:
        return classify_detail(status.errors[0])
    return ErrorClass(kind="never", reason="failed_without_error")
