"""``server.processes``: several serving processes on one port and one Redis, sharing the work.

A test that only checked that the port answers would pass with one process doing everything, so
this one looks at who did the work: which process accepted each HTTP connection (the server side
of the connection is a socket among that process's file descriptors), and which processes' worker
consumers read events from the ready stream (a consumer is named after its process's pid, and
Valkey records whether it ever read an entry).
"""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
from pathlib import Path

from redis import Redis

from bot.store.keys import READY, WORKERS
from tests.support.serve import BEARER, Served, free_port, http_json, write_toml
from tests.support.waiting import until

FLOW = "nodes:\n  - id: hi\n    send_message: {text: hi}\n"


def project(tmp_path: Path, valkey_url: str, port: int, **extra: dict[str, object]) -> Path:
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "hi.yaml").write_text(FLOW)
    return write_toml(
        tmp_path / "config.toml",
        {
            "server": {"port": port, "processes": 2, "admin_token": BEARER},
            "redis": {"url": valkey_url},
            "flows": {"path": str(tmp_path / "flows")},
            **extra,
        },
    )


def children_of(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def accepted_by(server_port: int, client_port: int, pids: set[int]) -> int:
    """The pid holding the server side of the loopback connection from ``client_port``."""
    inode = ""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1].split(":"), fields[2].split(":")
        if int(local[1], 16) == server_port and int(remote[1], 16) == client_port:
            inode = fields[9]
    assert inode, f"no server socket for client port {client_port}"
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return pid
            except OSError:
                continue  # closed meanwhile
    raise AssertionError(f"socket {inode} is in none of {pids}")


def readers(valkey_url: str, pids: set[int]) -> set[int]:
    """Those of ``pids`` whose worker consumers have read an entry of the ready stream."""
    with Redis.from_url(valkey_url, decode_responses=True) as redis:
        consumers = redis.xinfo_consumers(READY, WORKERS)
    # a consumer is "<host>:<pid>:<tag>:<n>"; inactive is -1 until it has read an entry
    return {
        pid
        for pid in pids
        for c in consumers
        if c["name"].split(":")[1:2] == [str(pid)] and int(c["inactive"]) >= 0
    }


def test_two_processes_share_connections_and_events_then_stop_together(
    tmp_path: Path, valkey_url: str
) -> None:
    port = free_port()
    config = project(tmp_path, valkey_url, port, channels={"console": {"type": "console"}})
    served = Served(config, port, tmp_path / "serve.log")
    with served:
        (child,) = children_of(served.pid)
        pids = {served.pid, child}
        # the kernel spreads new connections over the two listeners (SO_REUSEPORT)
        handlers: set[int] = set()

        def connect_once() -> set[int]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            try:
                conn.request("GET", "/healthz")
                response = conn.getresponse()
                assert response.status == 200
                response.read()
                handlers.add(accepted_by(port, conn.sock.getsockname()[1], pids))
            finally:
                conn.close()
            return handlers if handlers == pids else set()

        until(connect_once, "both processes to accept connections", timeout=15, every=0.01)

        # and both processes' workers take events from the one ready stream
        base = served.base
        sent = 0

        def start_one() -> set[int]:
            nonlocal sent
            status, contact = http_json(
                f"{base}/api/v1/contacts", {"urn": f"console:c{sent}", "name": f"C {sent}"}
            )
            assert status == 201, contact
            status, body = http_json(
                f"{base}/api/v1/contacts/{contact['uuid']}/start", {"flow": "hi"}
            )
            assert status == 202, body
            sent += 1
            return pids if readers(valkey_url, pids) == pids else set()

        until(start_one, "both processes to read events", timeout=30, every=0.02)
    assert served.proc is not None and served.proc.returncode == 0, served.output()
    # the child was stopped with its parent
    until(
        lambda: (
            not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text()
        ),
        "the child to exit",
        timeout=10,
        every=0.05,
    )


def test_an_in_process_sandbox_is_refused_with_several_processes(
    tmp_path: Path, valkey_url: str
) -> None:
    sandbox = {
        "type": "whatsapp",
        "graph_url": "sandbox",
        "phone_number_id": "1",
        "waba_id": "2",
        "access_token": "t",
    }
    config = project(tmp_path, valkey_url, free_port(), channels={"whatsapp": sandbox})
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "--config", str(config), "serve"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "cannot share an in-process sandbox" in result.stderr
