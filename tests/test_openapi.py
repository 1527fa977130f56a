"""The OpenAPI document stays true to the app: the same routes both ways, well-formed, served.

Route coverage is checked on the router of the app ``chasqui serve`` builds (``create_app``,
with a WhatsApp channel on the sandbox so that its ``/_sandbox/`` sub-app is there to be left
out); serving is checked over real HTTP.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from openapi_spec_validator import validate

from bot.api.app import OPS, create_app
from bot.api.openapi import ERROR_STATUS
from bot.api.openapi import openapi_document as document_of
from bot.core.config import Config
from bot.work.runtime import Runtime

TOKEN = "openapi-admin-token"
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[[web.Application], Awaitable[Client]]


def _config(tmp_path: Path, valkey_url: str) -> Config:
    flows = tmp_path / "flows"
    flows.mkdir(exist_ok=True)
    return Config.model_validate(
        {
            "server": {"admin_token": TOKEN},
            "redis": {"url": valkey_url, "data_dir": str(tmp_path / "var")},
            "flows": {"path": str(flows)},
            "channels": {
                "console": {"type": "console"},
                "whatsapp": {
                    "type": "whatsapp",
                    "graph_url": "sandbox",
                    "phone_number_id": "100200300400500",
                    "waba_id": "230918475512034",
                    "access_token": "sandbox-token",
                    "app_secret": "sandbox-app-secret",
                    "verify_token": "sandbox-verify-token",
                },
            },
            "base_dir": str(tmp_path),
        }
    )


def openapi_document() -> dict[str, Any]:
    return document_of(OPS)


def _registered(app: web.Application) -> set[tuple[str, str]]:
    """(method, OpenAPI path) of every route, without HEAD/OPTIONS, the sandbox sub-apps, and
    the pages for people (Studio, and ``/`` that leads to it), which are not the JSON API."""
    out = set()
    for route in app.router.routes():
        assert route.resource is not None
        path = route.resource.canonical
        if route.method in ("HEAD", "OPTIONS") or path.startswith(("/_sandbox/", "/studio/")):
            continue
        if path == "/":
            continue
        # aiohttp's "{name:regex}" is OpenAPI's "{name}"
        out.add((route.method.lower(), re.sub(r"\{(\w+)(:[^}]*)?\}", r"{\1}", path)))
    return out


def _documented(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(m, path) for path, item in doc["paths"].items() for m in item if m in METHODS}


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield path, method, op, item


def test_the_document_and_the_router_have_the_same_routes(tmp_path: Path, valkey_url: str) -> None:
    app = create_app(_config(tmp_path, valkey_url))
    assert any(
        r.resource.canonical.startswith("/_sandbox/") for r in app.router.routes() if r.resource
    )
    registered, documented = _registered(app), _documented(openapi_document())
    assert registered - documented == set(), "routes the document lacks"
    assert documented - registered == set(), "documented routes the app does not have"
    assert ("get", "/api/v1/openapi.json") in registered
    assert ("post", "/webhooks/{type}/{name}") in registered


def test_the_token_guards_every_api_route_and_nothing_else() -> None:
    doc = openapi_document()
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["bearer"]["description"],
    }
    assert doc["security"] == [{"bearer": []}]
    for path, method, op, _ in _operations(doc):
        security = op.get("security", doc["security"])
        if path.startswith("/api/v1/"):
            assert security == [{"bearer": []}], (method, path)
            assert "unauthorized" in op["responses"]["401"]["description"], (method, path)
        else:
            assert security == [], (method, path)
            assert "401" not in op["responses"], (method, path)


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        assert isinstance(node, dict) and part in node, f"{ref} does not resolve"
        node = node[part]
    return node


def test_the_document_is_well_formed_openapi_3_1() -> None:
    doc = openapi_document()
    validate(doc)  # type: ignore[arg-type]
    assert doc["openapi"].startswith("3.1.")
    assert doc["info"]["title"] == "Chasqui admin API"
    assert re.match(r"^\d+\.\d+", doc["info"]["version"])
    assert set(doc) >= {"openapi", "info", "paths", "components"}
    refs = list(_refs(doc))
    assert "#/components/schemas/Error" in refs
    for ref in refs:
        _resolve(doc, ref)
    operation_ids = [op["operationId"] for _, _, op, _ in _operations(doc)]
    assert len(operation_ids) == len(set(operation_ids))
    for path, method, op, item in _operations(doc):
        assert op["responses"], (method, path)
        # every {param} of the path is declared as a required path parameter, and only those
        in_path = set(re.findall(r"\{(\w+)\}", path))
        params = [*item.get("parameters", []), *op.get("parameters", [])]
        declared = {p["name"] for p in params if p["in"] == "path"}
        assert declared == in_path, (method, path)
        assert all(p["required"] for p in params if p["in"] == "path")
        for status, response in op["responses"].items():
            assert re.match(r"^[1-5]\d\d$", status) and response["description"], (path, status)


def test_error_responses_use_the_shared_shape_and_list_their_codes() -> None:
    doc = openapi_document()
    error = doc["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    detail = _resolve(doc, error["properties"]["error"]["$ref"])
    assert detail["required"] == ["code", "message"]
    assert set(detail["properties"]) == {"code", "message", "details"}
    for path, method, op, _ in _operations(doc):
        for status, response in op["responses"].items():
            if not status.startswith("4") or path.startswith("/healthz"):
                continue
            assert response["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/Error"
            }, (method, path, status)
            codes = re.findall(r"`(\w+)`", response["description"])
            assert codes and all(ERROR_STATUS[c] == int(status) for c in codes), (path, status)


@pytest.mark.parametrize(
    ("method", "path", "codes"),
    [
        ("post", "/api/v1/contacts/{uuid}/start", {"unknown_contact", "unknown_flow"}),
        ("patch", "/api/v1/contacts/{uuid}", {"invalid_body", "contact_busy", "body_too_large"}),
        ("post", "/api/v1/groups", {"group_exists", "invalid_body"}),
        ("get", "/api/v1/contacts", {"invalid_urn", "unknown_group"}),
    ],
)
def test_operations_list_the_codes_their_handlers_answer(
    method: str, path: str, codes: set[str]
) -> None:
    op = openapi_document()["paths"][path][method]
    listed = set(
        re.findall(r"`(\w+)`", " ".join(r["description"] for r in op["responses"].values()))
    )
    assert codes <= listed


def test_request_bodies_say_what_the_handlers_accept() -> None:
    doc = openapi_document()
    paths = doc["paths"]

    def schema_of(path: str, method: str) -> dict[str, Any]:
        ref = paths[path][method]["requestBody"]["content"]["application/json"]["schema"]
        resolved: dict[str, Any] = _resolve(doc, ref["$ref"])
        return resolved

    create = schema_of("/api/v1/contacts", "post")
    assert "required" not in create  # urns or urn: one of the two, said in the description
    assert create["additionalProperties"] is False  # the handler refuses unknown keys
    assert set(create["properties"]) >= {"urns", "urn", "name", "fields", "groups", "status"}
    assert create["properties"]["status"]["enum"] == ["active", "opted_out", "blocked"]
    assert schema_of("/api/v1/contacts/{uuid}/start", "post")["required"] == ["flow"]
    assert schema_of("/api/v1/starts", "post")["required"] == ["flow"]
    imported = paths["/api/v1/contacts/import"]["post"]["requestBody"]["content"]
    assert set(imported) == {"text/csv", "multipart/form-data"}


def test_lists_page_the_same_way() -> None:
    """Every list takes limit and cursor and answers next."""
    doc = openapi_document()
    lists = [
        "/api/v1/contacts",
        "/api/v1/groups",
        "/api/v1/runs",
        "/api/v1/starts",
        "/api/v1/starts/{uuid}/contacts",
        "/api/v1/templates",
    ]
    for path in lists:
        op = doc["paths"][path]["get"]
        assert {"limit", "cursor"} <= {p["name"] for p in op["parameters"]}, path
        answer = _resolve(
            doc, op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        )
        assert "next" in answer["required"], path


@pytest.fixture
async def client(aiohttp_client: ClientFactory, tmp_path: Path, valkey_url: str) -> Client:
    config = _config(tmp_path, valkey_url)
    config = config.model_copy(update={"channels": {"console": config.channels["console"]}})
    return await aiohttp_client(create_app(config, Runtime(config)))


async def test_the_document_is_served_behind_the_token(client: Client) -> None:
    async with client.get("/api/v1/openapi.json") as resp:
        assert resp.status == 401
        assert (await resp.json())["error"]["code"] == "unauthorized"
    wrong = {"Authorization": "Bearer nope"}
    async with client.get("/api/v1/openapi.json", headers=wrong) as resp:
        assert resp.status == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with client.get("/api/v1/openapi.json", headers=auth) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        assert await resp.json() == openapi_document()
