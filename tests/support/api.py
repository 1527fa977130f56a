"""The admin API of the app ``chasqui serve`` runs (``create_app``), on an aiohttp test client.

:func:`app_config` builds the config the tests start it with (session Valkey, a flows folder
written from a mapping, the console channel, one admin token); :class:`Api` is the client, with
the runtime beside it so a test can also read the store or drive the worker itself.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from bot.core.config import Config
from bot.store import Store
from bot.work.runtime import Runtime
from bot.work.starts import Starter
from bot.work.worker import Worker

TOKEN = "s3cret-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_BODY = 2048  # the ``api`` fixture's server.max_body_bytes

GREETING = """\
name: Greeting
language: es
nodes:
  - id: hello
    send_message: {text: "Hola @contact.first_name"}
    next: ask
  - id: ask
    wait_for_reply:
      result: answer
      cases: [{has_text: true, category: Any, next: bye}]
  - id: bye
    send_message: {text: Chau}
"""
"""The ``api`` fixture's one flow."""

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[[web.Application], Awaitable[Client]]


def write_flows(folder: Path, flows: Mapping[str, str]) -> Path:
    """``folder`` (created) holding ``<id>.yaml`` for each flow id and YAML text."""
    folder.mkdir(parents=True, exist_ok=True)
    for flow_id, text in flows.items():
        (folder / f"{flow_id}.yaml").write_text(text, encoding="utf-8")
    return folder


def app_config(
    tmp_path: Path,
    valkey_url: str,
    flows: Mapping[str, str] = {},
    **sections: Any,
) -> Config:
    """A config on ``valkey_url`` with ``flows`` in ``tmp_path/flows``, the console channel and
    the admin :data:`TOKEN`; ``sections`` are merged over the top-level sections given, except
    ``channels``, which replaces the console channel."""
    data: dict[str, Any] = {
        "server": {"admin_token": TOKEN},
        "redis": {"url": valkey_url, "data_dir": str(tmp_path / "var")},
        "flows": {"path": str(write_flows(tmp_path / "flows", flows))},
        "channels": {"console": {"type": "console"}},
        "base_dir": str(tmp_path),
    }
    for name, value in sections.items():
        merge = name != "channels" and isinstance(data.get(name), dict)
        data[name] = {**data[name], **value} if merge else value
    return Config.model_validate(data)


class Api:
    """A started app, its runtime, and an HTTP client for it that sends the admin token."""

    def __init__(self, client: Client, runtime: Runtime, flows: Path) -> None:
        self.client, self.runtime, self.flows = client, runtime, flows
        self.store: Store = runtime.store

    @property
    def worker(self) -> Worker:
        assert self.runtime.worker is not None
        return self.runtime.worker

    @property
    def starter(self) -> Starter:
        return self.worker.starter

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> tuple[int, Any]:
        """``(status, JSON body)``; ``body`` is sent as JSON text (a ``str`` as it is),
        ``headers`` replace the default (the admin token)."""
        if body is not None:
            kwargs["data"] = body if isinstance(body, str | bytes) else json.dumps(body)
        sent = AUTH if headers is None else headers
        async with self.client.request(method, path, headers=sent, **kwargs) as resp:
            return resp.status, await resp.json()

    async def get(self, path: str, **kwargs: Any) -> tuple[int, Any]:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
        return await self.request("POST", path, body, **kwargs)

    # -- driving the worker from the test (after ``make_api(drive=True)`` stopped its loops) --
    async def drain_events(self) -> None:
        """Process the ready and send streams until both are empty."""
        while True:
            entries = await self.store.read_ready("t", 200, None)
            sends = await self.store.read_sendq("t", 200, None)
            if not entries and not sends:
                return
            if entries:
                await self.worker.process(entries)
            if sends:
                await self.worker.send(sends)

    async def drain(self) -> None:
        """Events and sends, then one chunk of a start, again, until nothing is left."""
        while True:
            await self.drain_events()
            await self.starter.move_due()
            entries = await self.starter.read("t", None)
            if not entries:
                await self.drain_events()
                return
            for eid, sid in entries:
                await self.starter.handle(eid, sid)


async def new_contact(api: Api, urn: str = "console:x", name: str = "Ana Souza") -> str:
    """A contact created in the store (not through the API); its uuid."""
    contact, created = await api.store.contact_for_urn(urn, name)
    assert created
    return str(contact["uuid"])


MakeApi = Callable[..., Awaitable[Api]]
"""The ``make_api`` fixture (tests/conftest.py)."""


def assert_error(status: int, body: Any, expected_status: int, code: str) -> None:
    """``body`` is the API's JSON error with ``code``, a message, and no stack trace."""
    assert status == expected_status, body
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert "Traceback" not in str(body)
