"""One operation of the API, declared once: its route, its handler and the models of what it
takes and answers. ``setup_routes`` registers the operations and :mod:`bot.api.openapi`
describes the same list, so the router and the document cannot drift apart.

Also the two readers every handler uses: :func:`body` and :func:`query`, which answer a 400 that
names the field when a request does not fit its model.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from bot.core.errors import ApiError
from bot.core.jsonin import JsonRefused, loads

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, eq=False)
class Op:
    method: str
    path: str
    handler: Handler
    summary: str
    response: type[BaseModel] | None  # None: the document says it by hand (``doc``)
    status: int = 200
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    errors: tuple[str, ...] = ()  # the codes it answers, beyond the ones every route may
    also: tuple[int, ...] = ()  # other success statuses answering the same model
    public: bool = False  # no admin token
    doc: dict[str, Any] = field(default_factory=dict)  # hand-written OpenAPI, merged in


def setup_routes(app: web.Application, ops: list[Op]) -> None:
    for op in ops:
        app.router.add_route(op.method, op.path, op.handler)


def _problems(exc: ValidationError) -> list[dict[str, str]]:
    return [
        {"field": ".".join(str(p) for p in e["loc"]) or "(body)", "message": e["msg"]}
        for e in exc.errors(include_url=False)
    ]


def invalid(code: str, exc: ValidationError) -> ApiError:
    problems = _problems(exc)
    first = problems[0]
    return ApiError(400, code, f"{first['field']}: {first['message']}", {"errors": problems[:20]})


async def body(request: web.Request, model: type[M]) -> M:
    """The request's JSON body as ``model``, or 400 ``invalid_body`` naming the field. Read by
    the one JSON reader for what comes from outside (no NaN, no nesting too deep), then
    validated strictly (the models say ``strict``: JSON types are not coerced)."""
    try:
        data = loads(await request.read())
    except JsonRefused as exc:
        raise ApiError(400, "invalid_body", f"the body is not valid JSON: {exc}") from None
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        raise ApiError(400, "invalid_body", "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_body", "the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid("invalid_body", exc) from None


def query(request: web.Request, model: type[M]) -> M:
    """The query string as ``model``, or 400 ``bad_request`` naming the parameter."""
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        raise invalid("bad_request", exc) from None
