"""The served API against its served document, by schemathesis: every operation, with inputs
generated from the document (valid ones and invalid ones), over real HTTP on loopback to a real
``chasqui serve`` on the session's Valkey. Every answer must be one the document lists, with
the body and content type it says, invalid input must be refused with a 4xx, and nothing may
answer 5xx.

The server holds a flow, a contact and a group, so that generated requests also reach the
paths where things exist; examples per operation are capped to keep the run near half a minute.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from bot.api.app import OPS
from bot.api.openapi import openapi_document
from tests.support.serve import BEARER, Served, free_port, http_json, write_toml

FLOW = """\
name: Hello
language: es
nodes:
  - id: hi
    send_message: {text: Hola}
"""
AUTH = {"Authorization": f"Bearer {BEARER}"}
EXAMPLES = 10  # per operation and mode: the whole file in about half a minute here
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, valkey_url: str) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("schemathesis")
    (root / "flows").mkdir()
    (root / "flows" / "hello.yaml").write_text(FLOW, encoding="utf-8")
    port = free_port()
    config = write_toml(
        root / "config.toml",
        {
            "server": {"port": port, "admin_token": BEARER},
            "redis": {"url": valkey_url.replace("/0", "/5")},  # a database of its own
            "flows": {"path": str(root / "flows")},
            "channels": {"console": {"type": "console"}},
        },
    )
    with Served(config, port, root / "serve.log") as server:
        status, contact = http_json(
            f"{server.base}/api/v1/contacts",
            {"urn": "console:schemathesis", "groups": ["Probados"]},
        )
        assert status in (201, 409), contact
        yield server
    assert "internal error" not in server.output()


@pytest.fixture(scope="module")
def api_schema(served: Served) -> Any:
    """The document as the server serves it (not as this process would build it)."""
    return schemathesis.openapi.from_url(f"{served.base}/api/v1/openapi.json", headers=AUTH)


# one test per operation, listed from the document this code generates (no server needed to
# collect); each test reads the operation from the served document
OPERATIONS = [
    (method.upper(), path)
    for path, item in openapi_document(OPS)["paths"].items()
    for method in item
]


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_api_answers_as_its_document_says(
    api_schema: Any, method: str, path: str, mode: GenerationMode
) -> None:
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        if mode is GenerationMode.NEGATIVE and "Authorization" not in (case.headers or {}):
            # the invalid part is the missing token, which AUTH below puts back: what is sent
            # may then be valid (a one-element array query is the scalar on the wire), and
            # schemathesis would call its acceptance a failure. Tokens are tested elsewhere.
            return
        case.call_and_validate(headers=AUTH, checks=CHECKS, timeout=10)

    try:
        check()
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise
        # every input the document allows is valid here (free text path parameters, no body,
        # no query): there is no invalid request to make


def test_the_fixture_data_is_there(served: Served) -> None:
    """The generated requests meet a flow, a contact and a group, not an empty server."""
    status, body = http_json(f"{served.base}/api/v1/flows")
    assert status == 200 and [f["id"] for f in body["flows"]] == ["hello"]
    status, body = http_json(f"{served.base}/api/v1/groups?limit=500")
    assert "Probados" in [g["name"] for g in body["groups"]]
