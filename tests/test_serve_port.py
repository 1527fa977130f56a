"""``chasqui serve`` on a port that is taken says so in one line, not with a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from tests.support.serve import write_toml


def test_a_taken_port_is_a_clear_error(tmp_path: Path, valkey_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        flows = tmp_path / "flows"
        flows.mkdir()
        config = write_toml(
            tmp_path / "config.toml",
            {
                "server": {"port": port, "admin_token": "t"},
                "redis": {"url": valkey_url},
                "flows": {"path": str(flows)},
            },
        )
        done = subprocess.run(
            [sys.executable, "-m", "bot.cli", "--config", str(config), "serve"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "server.port" in done.stderr
    assert "Traceback" not in done.stderr
