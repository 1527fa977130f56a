"""Faults and exposure: what a misbehaving client or a curious neighbour meets.

The app is served the way ``chasqui serve`` serves it (``bot.api.serving``), on loopback, with a
short ``server.read_timeout``: a client that trickles its request is cut off, a client that
goes away mid-request is an ordinary event (INFO, once, no traceback).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis

from bot.api.app import create_app
from bot.api.serving import serve
from bot.core.config import Config
from bot.store.embedded import EmbeddedValkey
from tests.support.serve import http_json
from tests.support.waiting import until
from tests.support.whatsapp import AUTH as WA_AUTH
from tests.support.whatsapp import PNID as WA_PNID
from tests.support.whatsapp import WA

TOKEN = "s3cret-admin-token"
READ_TIMEOUT = 1.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
async def server(valkey_url: str, tmp_path: Path) -> AsyncIterator[int]:
    """The port of a served app (console channel, no flows) with a 1 s read timeout."""
    (tmp_path / "flows").mkdir()
    config = Config.model_validate(
        {
            "server": {"admin_token": TOKEN, "read_timeout": READ_TIMEOUT},
            "redis": {"url": valkey_url, "data_dir": str(tmp_path / "var")},
            "flows": {"path": str(tmp_path / "flows")},
            "channels": {"console": {"type": "console"}},
            "base_dir": str(tmp_path),
        }
    )
    port = _free_port()
    task = asyncio.create_task(
        serve(create_app(config), host="127.0.0.1", port=port, read_timeout=READ_TIMEOUT)
    )
    try:
        for _ in range(200):
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            await asyncio.sleep(0.05)
        yield port
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _closed_after(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, trickle: list[bytes], every: float
) -> float:
    """Send ``trickle`` a piece every ``every`` s until the server closes; seconds it took."""
    began = time.monotonic()
    for piece in trickle:
        try:
            writer.write(piece)
            await writer.drain()
        except ConnectionError:
            break
        with contextlib.suppress(asyncio.TimeoutError):
            if await asyncio.wait_for(reader.read(), every) == b"" or reader.at_eof():
                break
    writer.close()
    return time.monotonic() - began


async def test_a_request_head_trickled_a_line_at_a_time_is_cut_off(server: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    lines = [b"GET /healthz HTTP/1.1\r\n"] + [b"X-Slow: %d\r\n" % i for i in range(20)]
    took = await _closed_after(reader, writer, lines, READ_TIMEOUT / 3)
    assert READ_TIMEOUT * 0.9 < took < READ_TIMEOUT * 3


async def test_a_connection_that_sends_nothing_is_cut_off(server: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    began = time.monotonic()
    assert await asyncio.wait_for(reader.read(), READ_TIMEOUT * 5) == b""
    assert READ_TIMEOUT * 0.9 < time.monotonic() - began < READ_TIMEOUT * 3
    writer.close()


async def test_a_stalled_body_is_cut_off_but_a_slow_moving_one_is_not(
    server: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    head = (
        b"POST /api/v1/contacts HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: Bearer {TOKEN}\r\n".encode()
        + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
    )
    # moving: a byte every half timeout, for three timeouts, then the answer
    body = b'{"urn": "console:slow",' + b" " * 5 + b'"name": "S"}'
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    writer.write(head % len(body) + body[:-6])
    for byte in body[-6:]:
        await asyncio.sleep(READ_TIMEOUT / 2)
        writer.write(bytes([byte]))
    answer = await asyncio.wait_for(reader.readline(), 5)
    assert answer.startswith(b"HTTP/1.1 201"), answer
    writer.close()
    # stalled: half the body, then nothing
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    writer.write(head % 1000 + b'{"urn": "console:a')
    began = time.monotonic()
    assert await asyncio.wait_for(reader.read(), READ_TIMEOUT * 5) == b""
    assert READ_TIMEOUT * 0.9 < time.monotonic() - began < READ_TIMEOUT * 3
    writer.close()
    said = [r.getMessage() for r in caplog.records if r.name == "chasqui.server"]
    assert any("request body stalled" in m for m in said), said


async def test_a_client_gone_mid_body_is_logged_once_at_info(
    server: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _, writer = await asyncio.open_connection("127.0.0.1", server)
    writer.write(
        b"POST /api/v1/contacts HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: Bearer {TOKEN}\r\n".encode()
        + b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
        + b'{"urn": "console:a'
    )
    await writer.drain()
    await asyncio.sleep(0.2)  # the handler is now waiting for the rest of the body
    writer.close()
    await writer.wait_closed()
    deadline = time.monotonic() + 3
    while not any("went away" in r.getMessage() for r in caplog.records):
        assert time.monotonic() < deadline, "no line about the client"
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)  # anything logged after it would be counted too
    gone = [r for r in caplog.records if "went away" in r.getMessage()]
    assert len(gone) == 1
    assert gone[0].levelno == logging.INFO and gone[0].exc_info is None
    assert gone[0].getMessage() == "client went away during POST /api/v1/contacts"
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert loud == [], [(r.name, r.getMessage()) for r in loud]


def test_the_data_directory_and_the_aof_are_private(tmp_path: Path) -> None:
    data = tmp_path / "var"
    data.mkdir(mode=0o755)  # as an older version (or a careless mkdir) left it
    data.chmod(0o755)
    umask = os.umask(0o022)  # the usual umask: files 0644, directories 0755
    try:
        server = EmbeddedValkey(data, port=0)
        url = server.start_sync()
        try:
            with redis.Redis.from_url(url) as client:
                client.set("k", "v")
                client.bgrewriteaof()  # a rewrite writes new files: they must be private too
                deadline = time.monotonic() + 10
                while client.info("persistence")["aof_rewrite_in_progress"]:
                    assert time.monotonic() < deadline
                    time.sleep(0.05)
            modes = {
                str(p.relative_to(data)): stat.S_IMODE(p.stat().st_mode)
                for p in [data, *data.rglob("*")]
            }
        finally:
            server.stop_sync()
    finally:
        os.umask(umask)
    assert modes["."] == 0o700
    aof = [name for name in modes if name.startswith("appendonlydir/")]
    assert aof, modes
    assert modes["appendonlydir"] == 0o700
    assert {modes[name] for name in aof} == {0o600}, modes
    assert {mode for name, mode in modes.items() if name not in ("appendonlydir", ".")} == {
        0o600
    }, modes


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "bot.example.com"])
def test_the_sandbox_refuses_a_host_reachable_from_elsewhere(host: str, tmp_path: Path) -> None:
    standalone = subprocess.run(
        [sys.executable, "-m", "bot.cli", "sandbox", "--host", host, "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert standalone.returncode == 2, standalone.stderr
    assert "loopback only" in standalone.stderr
    (tmp_path / "flows").mkdir()
    config = tmp_path / "config.toml"
    config.write_text(
        f'[server]\nhost = "{host}"\nport = 1\nadmin_token = "t"\n'
        f'[redis]\nurl = "redis://127.0.0.1:1/0"\n'
        '[channels.whatsapp]\ntype = "whatsapp"\ngraph_url = "sandbox"\n'
        'phone_number_id = "1"\nwaba_id = "2"\naccess_token = "a"\n'
        'app_secret = "s"\nverify_token = "v"\n'
    )
    served = subprocess.run(
        [sys.executable, "-m", "bot.cli", "--config", str(config), "serve"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert served.returncode == 2, served.stderr
    assert "loopback only" in served.stderr and f"server.host = '{host}'" in served.stderr


async def test_the_mounted_sandbox_controls_take_the_servers_admin_token(wa: WA) -> None:
    """`chasqui serve` hands its admin token to the sandbox it mounts (the channel mount hook)."""
    inbound = {"from": "51987650123", "text": "hola"}
    url = f"{wa.sandbox}/_fake/inbound"
    for headers in ({}, {"Authorization": "Bearer not-the-token"}, {"Authorization": "Bearer "}):
        async with wa.http.post(url, json=inbound, headers=headers) as r:
            assert r.status == 401, await r.text()
            assert (await r.json())["error"]["code"] == "unauthorized"
    async with wa.http.post(url, json=inbound, headers=WA_AUTH) as r:
        assert r.status == 200, await r.text()
        assert (await r.json())["delivery"]["status"] == 200  # signed, posted, accepted
    # the server's own API is unchanged, and the sandbox's Graph routes keep their access token
    async with wa.http.get(f"{wa.sandbox}/v24.0/{WA_PNID}", headers=WA_AUTH) as r:
        assert r.status == 401


def _refused(url: str) -> bool:
    try:
        return http_json(url, headers={})[0] == 401
    except OSError:  # not listening yet
        return False


def test_chasqui_sandbox_takes_the_given_token_else_the_servers(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[redis]\ndata_dir = "var"\n')
    for args in (["--admin-token", "given-token"], []):
        port = _free_port()
        url = f"http://127.0.0.1:{port}/_fake/clock"
        argv = [sys.executable, "-m", "bot.cli", "--config", str(config), "sandbox"]
        proc = subprocess.Popen([*argv, "--port", str(port), *args], stdout=subprocess.DEVNULL)
        try:
            until(lambda: proc.poll() is not None or _refused(url), "the sandbox")  # noqa: B023
            assert proc.poll() is None
            # no flag: the token `chasqui serve` would use, generated into the data dir
            token = args[1] if args else (tmp_path / "var" / "admin-token").read_text().strip()
            assert http_json(url, headers={"Authorization": "Bearer guess"})[0] == 401
            assert http_json(url, headers={"Authorization": f"Bearer {token}"})[0] == 200
        finally:
            proc.terminate()
            proc.wait(10)
