"""The admin API described as an OpenAPI 3.1 document, served at ``GET /api/v1/openapi.json``.

Generated from the operations the app registers (:class:`bot.api.routes.Op`, one list per
resource module) and the pydantic models of their bodies, query strings and answers
(:mod:`bot.api.models`). Written by hand here only what a model cannot say: the path
parameters, the error codes' statuses, the channels' webhooks and this document's own route.
``tests/test_openapi.py`` checks that the router and the document have the same routes both
ways; ``tests/test_schemathesis.py`` checks the served API against it.
"""

from __future__ import annotations

import copy
import re
from functools import cache
from importlib import metadata
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from bot.api import models as m
from bot.api.routes import Op

JSON = "application/json"
REF = "#/components/schemas/{model}"

# the status each error code is answered with (bot/core/errors.py)
ERROR_STATUS: dict[str, int] = {
    "bad_request": 400,
    "invalid_body": 400,
    "invalid_urn": 400,
    "unauthorized": 401,
    "not_found": 404,
    "unknown_flow": 404,
    "unknown_contact": 404,
    "unknown_group": 404,
    "unknown_start": 404,
    "method_not_allowed": 405,
    "group_exists": 409,
    "urn_in_use": 409,
    "contact_busy": 409,
    "start_finished": 409,
    "nothing_to_retry": 409,
    "body_too_large": 413,
    "template_not_found": 422,
    "template_not_approved": 422,
    "template_params_mismatch": 422,
    "internal": 500,
    "redis_unavailable": 503,
}

DESCRIPTION = """\
The admin API of Chasqui. Every `/api/v1/` route, this document included, needs \
`Authorization: Bearer <token>` (`server.admin_token`, or the token generated into \
`var/admin-token`): the document is served behind the token like the rest of the API, so that \
an unauthenticated caller learns nothing about the deployment. `/healthz` and the channels' \
webhooks need no token.

Every resource has a uuid and its routes take it (a group's routes also take its name). Lists \
take `limit` and `cursor` and answer `next`, the cursor of the next page (null on the last).

Errors are JSON, `{"error": {"code", "message", "details"?}}`, with a stable machine-readable \
code; each operation's error responses list the codes it can answer. A body that does not fit \
its schema is `invalid_body` naming the field. Any route can also answer `not_found` (404, no \
such route), `method_not_allowed` (405), `redis_unavailable` (503, the data store cannot be \
reached right now: retry) and `internal` (500, with a reference to the log line; never a \
stack trace)."""

PATH_PARAMS = {
    "uuid": "The uuid of the {what}.",
    "id": "The flow's id.",
    "name": "The channel's name in the config.",
    "media_id": "The provider's id of the attachment.",
    "type": "The channel type, e.g. whatsapp.",
}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {JSON: {"schema": schema}}


def _ref(model: type[BaseModel]) -> dict[str, Any]:
    return {"$ref": REF.format(model=model.__name__)}


def _errors(codes: tuple[str, ...]) -> dict[str, Any]:
    """Error responses, one per status, each listing the codes it stands for."""
    by_status: dict[int, list[str]] = {}
    for code in dict.fromkeys(codes):
        by_status.setdefault(ERROR_STATUS[code], []).append(code)
    return {
        str(status): {
            "description": "Error codes: " + ", ".join(f"`{c}`" for c in found),
            "content": _json(_ref(m.Error)),
        }
        for status, found in sorted(by_status.items())
    }


def _path_params(path: str) -> list[dict[str, Any]]:
    what = path.split("/")[3].removesuffix("s") if path.startswith("/api/v1/") else ""
    out = []
    for name in re.findall(r"\{(\w+)\}", path):
        schema: dict[str, Any] = {"type": "string"}
        description = PATH_PARAMS[name].format(what=what)
        if name == "uuid" and what == "group":
            description = "The group's uuid, or its name."
        elif name == "uuid":
            schema["format"] = "uuid"
        out.append(
            {
                "name": name,
                "in": "path",
                "required": True,
                "description": description,
                "schema": schema,
            }
        )
    return out


def _query_params(model: type[BaseModel], schemas: dict[str, Any]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=REF)
    schemas.update(schema.pop("$defs", {}))
    required = set(schema.get("required", []))
    out = []
    for name, prop in schema["properties"].items():
        prop = dict(prop)
        prop.pop("title", None)
        param = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if "description" in prop:
            param["description"] = prop.pop("description")
        out.append(param)
    return out


def _operation(op: Op, schemas: dict[str, Any]) -> dict[str, Any]:
    doc = op.handler.__doc__ or ""
    operation: dict[str, Any] = {
        "operationId": f"{op.method.lower()}_{re.sub(r'[^a-z0-9]+', '_', op.path.lower())}".replace(
            "_api_v1_", "_"
        ).rstrip("_"),
        "summary": op.summary,
        "tags": [op.path.split("/")[3] if op.path.startswith("/api/v1/") else "health"],
    }
    if doc:
        operation["description"] = " ".join(doc.split())
    params = _path_params(op.path)
    if op.query is not None:
        params += _query_params(op.query, schemas)
    params += op.doc.get("parameters", [])
    if params:
        operation["parameters"] = params
    errors = list(op.errors)
    if op.body is not None:
        operation["requestBody"] = {"required": True, "content": _json(_ref(op.body))}
        errors += ["invalid_body", "body_too_large"]
    if "requestBody" in op.doc:
        operation["requestBody"] = op.doc["requestBody"]
        errors.append("body_too_large")
    responses: dict[str, Any] = {}
    if op.response is not None:
        for status in (op.status, *op.also):
            responses[str(status)] = {
                "description": op.response.__doc__ or op.summary,
                "content": _json(_ref(op.response)),
            }
    responses.update(op.doc.get("responses", {}))
    if not op.public:
        errors.insert(0, "unauthorized")
    else:
        operation["security"] = []
    responses.update(_errors(tuple(errors)))
    operation["responses"] = responses
    return operation


def _hand_written() -> dict[str, Any]:
    """The routes no model describes: the channels' webhooks and this document."""
    webhook = {
        "summary": "A channel's webhook (the channel answers; WhatsApp checks Meta's signature)",
        "tags": ["channels"],
        "security": [],
        "parameters": _path_params("/webhooks/{type}/{name}"),
        "responses": {
            "200": {"description": "As the channel answers."},
            **_errors(("bad_request", "not_found")),
        },
    }
    return {
        "/webhooks/{type}/{name}": {
            "get": {**copy.deepcopy(webhook), "operationId": "get_webhooks_type_name"},
            "post": {**copy.deepcopy(webhook), "operationId": "post_webhooks_type_name"},
        },
        "/api/v1/openapi.json": {
            "get": {
                "operationId": "get_openapi_json",
                "summary": "This document",
                "tags": ["meta"],
                "responses": {
                    "200": {
                        "description": "The OpenAPI 3.1 document.",
                        "content": _json({"type": "object"}),
                    },
                    **_errors(("unauthorized",)),
                },
            }
        },
    }


@cache
def _document(ops: tuple[Op, ...]) -> dict[str, Any]:
    models = {m.Error} | {
        model for op in ops for model in (op.body, op.response) if model is not None
    }
    _, top = models_json_schema(
        [(model, "validation") for model in sorted(models, key=lambda x: x.__name__)],
        ref_template=REF,
    )
    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    paths: dict[str, Any] = _hand_written()
    for op in ops:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, schemas)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Chasqui admin API",
            "version": metadata.version("chasqui"),
            "description": DESCRIPTION,
        },
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The admin token (`server.admin_token` or var/admin-token).",
                }
            },
            "schemas": schemas,
        },
    }


def openapi_document(ops: list[Op]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of these operations (a fresh dict on each call)."""
    return copy.deepcopy(_document(tuple(ops)))
