"""``server.processes``: several serving processes on one port and one Redis."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

FLOW = "nodes:\n  - id: hi\n    send_message: {text: hi}\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def project(tmp_path: Path, valkey_url: str, port: int, extra: str = "") -> Path:
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "hi.yaml").write_text(FLOW)
    config = tmp_path / "config.toml"
    config.write_text(
        f'[server]\nport = {port}\nprocesses = 2\nadmin_token = "t"\n'
        f'[redis]\nurl = "{valkey_url}"\n{extra}'
    )
    return config


def children_of(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def test_two_processes_serve_one_port_and_stop_together(tmp_path: Path, valkey_url: str) -> None:
    port = free_port()
    config = project(tmp_path, valkey_url, port)
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "--config", str(config), "serve"],
        stdout=log,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, "server did not come up"
                time.sleep(0.1)
        (child,) = children_of(proc.pid)
        # both are serving: the kernel spreads new connections over the two listeners
        for _ in range(20):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
                assert r.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()
    assert proc.returncode == 0, (tmp_path / "serve.log").read_text()
    # the child was stopped with its parent
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text()


def test_an_in_process_sandbox_is_refused_with_several_processes(
    tmp_path: Path, valkey_url: str
) -> None:
    sandbox = (
        '[channels.whatsapp]\ntype = "whatsapp"\ngraph_url = "sandbox"\n'
        'phone_number_id = "1"\nwaba_id = "2"\naccess_token = "t"\n'
    )
    config = project(tmp_path, valkey_url, free_port(), sandbox)
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "--config", str(config), "serve"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "cannot share an in-process sandbox" in result.stderr
    assert os.path.exists(config)
