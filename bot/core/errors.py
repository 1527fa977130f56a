"""Errors the admin API answers with: a 4xx, a stable machine-readable code, a human message.

Shape: ``{"error": {"code": "unknown_flow", "message": "...", "details": {...}}}``. Codes:

- ``unauthorized`` (401): missing or wrong bearer token
- ``not_found`` (404): no such route or object
- ``bad_request`` (400): unreadable JSON (also ``NaN``/``Infinity`` and nesting too deep for
  the parser, see :mod:`bot.core.jsonin`) or a missing/invalid field
- ``body_too_large`` (413): the request body is over the configured limit
- ``unknown_flow`` (404), ``unknown_contact`` (404), ``unknown_group`` (404)
- ``invalid_urn`` (400): a URN that is malformed or not a valid phone number
- ``group_exists`` (409), ``contact_busy`` (409: locked by a worker for longer than a write waits)
- ``redis_unavailable`` (503): the data store cannot be reached right now; retry
- ``internal`` (500): a bug of ours; logged with a reference, no stack trace in the answer
"""

from __future__ import annotations

from typing import Any

from aiohttp import web


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details

    def response(self) -> web.Response:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return web.json_response({"error": body}, status=self.status)
