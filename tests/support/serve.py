"""``chasqui serve`` as a subprocess, the way an operator runs it, and blocking HTTP to it.

:func:`write_toml` writes a config from nested dicts; :class:`Served` starts the server on it,
waits for ``/healthz``, and stops it (SIGTERM, or SIGKILL with :meth:`Served.kill`);
:func:`http_json` is one request answering ``(status, JSON body)``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

from tests.support.waiting import until

BEARER = "t"
"""The admin token of the configs these tests write (``server.admin_token``)."""


def free_port() -> int:
    """A TCP port nothing listens on right now (the kernel's pick)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a TOML basic string is a JSON string


def write_toml(path: Path, tables: dict[str, Any]) -> Path:
    """Write ``tables`` (``{"server": {...}, "channels": {"wa": {...}}}``) as TOML."""
    lines: list[str] = []

    def table(name: str, body: dict[str, Any]) -> None:
        lines.append(f"[{name}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in body.items() if not isinstance(v, dict))
        for key, sub in body.items():
            if isinstance(sub, dict):
                table(f"{name}.{key}", sub)

    for name, body in tables.items():
        table(name, body)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def http_json(
    url: str,
    body: Any = None,
    *,
    method: str | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 5,
) -> tuple[int, Any]:
    """One request (POST when ``body`` is given: JSON, or ``bytes`` as they are) with the admin
    token unless ``headers`` are given; ``(status, parsed JSON body)``, errors included."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    sent = {"Authorization": f"Bearer {BEARER}"} if headers is None else headers
    if data is not None and not isinstance(body, bytes):
        sent = {"Content-Type": "application/json", **sent}
    request = urllib.request.Request(url, data=data, method=method, headers=sent)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def healthy(base: str) -> bool:
    """Whether ``base/healthz`` answers 200 now."""
    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


class Served:
    """One ``chasqui serve`` on ``config``, its output in ``log``; a context manager."""

    def __init__(self, config: Path, port: int, log: Path) -> None:
        self.config, self.port, self.log_path = config, port, log
        self.base = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[str] | None = None

    @property
    def cli(self) -> list[str]:
        """The ``chasqui --config <config>`` command line, for other subcommands."""
        return [sys.executable, "-m", "bot.cli", "--config", str(self.config)]

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 30) -> Served:
        """Start the server and wait until ``/healthz`` answers 200."""
        self._log = self.log_path.open("a")
        self.proc = subprocess.Popen([*self.cli, "serve"], stdout=self._log, stderr=self._log)
        until(self._up, f"the server on {self.base} (log: {self.log_path})", timeout, 0.05)
        return self

    def _up(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"serve exited {self.proc.returncode}: {self.output()}")
        return healthy(self.base)

    def output(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM and wait: the exit code (``None``-safe if never started)."""
        return self._end(signal.SIGTERM, timeout)

    def kill(self) -> int:
        """SIGKILL: no shutdown code runs (its children are not told)."""
        return self._end(signal.SIGKILL, 10)

    def _end(self, sig: int, timeout: float) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        code = self.proc.wait(timeout=timeout)
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def __enter__(self) -> Served:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.stop()
        elif self._log is not None:
            self._log.close()
