"""Graph API errors in Meta's shape (reference section 6.9) and the titles of the codes."""

from __future__ import annotations

import json
import secrets
from typing import Any

from aiohttp import web

# Titles Meta uses for the codes (`message` is "(#<code>) <title>"); reference section 7.
TITLES: dict[int, str] = {
    0: "AuthException",
    1: "API Unknown",
    2: "API Service",
    4: "API Too Many Calls",
    10: "Permission Denied",
    100: "Invalid parameter",
    190: "Access token has expired",
    368: "Temporarily blocked for policies violations",
    80007: "Rate limit issues",
    130429: "Rate limit hit",
    130472: "User's number is part of an experiment",
    131000: "Something went wrong",
    131005: "Access denied",
    131008: "Required parameter is missing",
    131009: "Parameter value is not valid",
    131016: "Service unavailable",
    131021: "Recipient cannot be sender",
    131026: "Message undeliverable",
    131030: "Recipient phone number not in allowed list",
    131031: "Account has been locked",
    131042: "Business eligibility payment issue",
    131047: "Re-engagement message",
    131048: "Spam rate limit hit",
    131049: "This message was not delivered to maintain healthy ecosystem engagement.",
    131050: "User has stopped receiving marketing messages",
    131051: "Unsupported message type",
    131052: "Media download error",
    131053: "Media upload error",
    131056: "(Business Account, Consumer Account) pair rate limit hit",
    131057: "Account in maintenance mode",
    131062: "Business-scoped user ID recipient not supported",
    131063: "Marketing templates disabled",
    131064: "Messaging limit reduced",
    132000: "Number of parameters does not match the expected number of params",
    132001: "Template name does not exist in the translation",
    132005: "Translated text too long",
    132007: "Template Format Character Policy Violated",
    132012: "Parameter format does not match format in the created template",
    132015: "Template is Paused",
    132016: "Template is Disabled",
    133004: "Server Temporarily Unavailable",
    133010: "Phone number Not Registered",
    135000: "Generic user error",
    137000: "Identity key hash mismatch",
}

DETAILS: dict[int, str] = {
    130429: "Cloud API message throughput has been reached.",
    131047: (
        "Message failed to send because more than 24 hours have passed since the customer "
        "last replied to this number."
    ),
    131056: "Too many messages to the same recipient in a short time.",
    131026: "Message Undeliverable.",
}

HREF = "/documentation/business-messaging/whatsapp/support/error-codes"


def title(code: int) -> str:
    return TITLES.get(code, "Unknown error")


def details(code: int) -> str:
    return DETAILS.get(code, title(code))


class GraphError(Exception):
    """An error the Graph API answers synchronously."""

    def __init__(
        self,
        code: int,
        detail: str | None = None,
        *,
        http_status: int = 400,
        subcode: int | None = None,
        message: str | None = None,
    ) -> None:
        self.code = code
        self.detail = detail if detail is not None else details(code)
        self.http_status = http_status
        self.subcode = subcode
        self.message = message if message is not None else f"(#{code}) {title(code)}"
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "message": self.message,
            "type": "OAuthException",
            "code": self.code,
        }
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        error["error_data"] = {"messaging_product": "whatsapp", "details": self.detail}
        error["fbtrace_id"] = "A" + secrets.token_urlsafe(16)
        return {"error": error}

    def response(self) -> web.Response:
        return web.Response(
            body=json.dumps(self.body()).encode(),
            status=self.http_status,
            content_type="application/json",
        )


def invalid_token() -> GraphError:
    return GraphError(
        190,
        "The access token is missing or not one the sandbox knows.",
        http_status=401,
        message="Invalid OAuth access token - Cannot parse access token",
    )


def status_error(code: int, detail: str | None = None) -> dict[str, Any]:
    """The ``errors[]`` item of a ``failed`` status webhook (reference section 4)."""
    return {
        "code": code,
        "title": title(code),
        "message": title(code),
        "error_data": {"details": detail if detail is not None else details(code)},
        "href": HREF,
    }
