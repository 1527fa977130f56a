"""The middleware every request passes: the admin token on ``/api/`` routes, and every failure
answered as a JSON error with a code (:mod:`bot.core.errors`) -- never a bare 500 or a stack
trace."""

from __future__ import annotations

import hmac
import logging
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.api.context import TOKEN
from bot.core.errors import ApiError

log = logging.getLogger("chasqui.server")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes a JSON error with a code; never a bare 500 or a stack trace."""
    try:
        if request.path.startswith("/api/"):
            authorize(request)
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except web.HTTPRequestEntityTooLarge:
        return ApiError(413, "body_too_large", "the request body is too large").response()
    except web.HTTPNotFound:
        return ApiError(404, "not_found", f"no route {request.path}").response()
    except web.HTTPMethodNotAllowed:
        return ApiError(405, "method_not_allowed", f"{request.method} not allowed").response()
    except web.HTTPException:
        raise
    except (RedisConnectionError, RedisTimeoutError):
        log.warning("Redis unavailable on %s %s", request.method, request.path)
        return ApiError(
            503,
            "redis_unavailable",
            "the data store is unavailable; retry shortly",
        ).response()
    except Exception as exc:
        if isinstance(exc, ConnectionError) and _client_gone(request):
            # It gave up, lost its network, or was cut off by server.read_timeout: nothing
            # of ours broke, and there is no one left to answer.
            log.info("client went away during %s %s", request.method, request.path)
            return ApiError(400, "client_gone", "the client went away").response()
        ref = uuid.uuid4().hex[:12]
        log.exception("internal error %s on %s %s", ref, request.method, request.path)
        return ApiError(500, "internal", f"internal error (reference {ref})").response()


def _client_gone(request: web.Request) -> bool:
    """The request's own connection is closed (not some outbound call's)."""
    return request.transport is None or request.transport.is_closing()


def authorize(request: web.Request) -> None:
    header = request.headers.get("Authorization", "")
    given = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
    if not given or not hmac.compare_digest(given.encode(), request.config_dict[TOKEN].encode()):
        raise ApiError(
            401, "unauthorized", "send the admin token as 'Authorization: Bearer <token>'"
        )
