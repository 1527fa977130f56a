"""The terminal verbs' client of the running server's admin API (``server.url`` and the admin
token of the same config): one place that turns refusals into messages a CLI user can act on
(where the token was read from, whether the server runs at all)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from bot.core.config import Config
from bot.work.runtime import admin_token


class ApiFailed(Exception):
    def __init__(self, message: str, code: str = "", details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code, self.details = code, details or {}


def _token_source(config: Config) -> str:
    if config.server.admin_token.get_secret_value():
        return "server.admin_token in the config"
    return str(config.resolve(config.redis.data_dir) / "admin-token")


def call(config: Config, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        config.server.url + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={
            "Authorization": f"Bearer {admin_token(config)}",
            "Content-Type": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            raise ApiFailed(
                f"unauthorized: the server at {config.server.url} refused the admin token read "
                f"from {_token_source(config)}; use the config the server runs with (--config)",
                "unauthorized",
            ) from None
        try:
            error = json.loads(exc.read())["error"]
            raise ApiFailed(
                f"{error['code']}: {error['message']}", error["code"], error.get("details")
            ) from None
        except (ValueError, KeyError):
            raise ApiFailed(f"HTTP {exc.code}") from None
    except OSError as exc:
        raise ApiFailed(
            f"cannot reach the server at {config.server.url} ({exc}); is `chasqui serve` running?"
        ) from None
