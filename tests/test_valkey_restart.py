"""The embedded Valkey is killed (kill -9, as the OOM killer would): ``chasqui serve`` says it is
unhealthy, starts the server again on the same data, and is healthy again without a restart of
its own -- and it does not flood its log meanwhile (one line per loop per state change)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import time
from pathlib import Path

from tests.support.serve import Served, free_port, healthy, http_json, write_toml
from tests.support.waiting import until

HELD = 3.0  # seconds the test keeps the server from coming back, to look at the outage


def test_a_killed_embedded_valkey_is_started_again(tmp_path: Path) -> None:
    (tmp_path / "flows").mkdir()
    port = free_port()
    config = write_toml(
        tmp_path / "config.toml",
        {
            "server": {"port": port, "admin_token": "t"},
            "redis": {"url": "", "data_dir": str(tmp_path / "var")},
            "channels": {"console": {"type": "console"}},
        },
    )
    served = Served(config, port, tmp_path / "serve.log")
    data = tmp_path / "var"
    old = new = 0
    with served:
        base = served.base
        status, contact = http_json(f"{base}/api/v1/contacts", {"urn": "console:ana"})
        assert status == 201
        time.sleep(1.5)  # the AOF is fsync'd every second: the contact is on disk now
        old = int((data / "valkey.pid").read_text())
        before = len(served.output().splitlines())
        # Hold the data dir's lock (as a chasqui starting the server would) so that the outage
        # lasts long enough to be seen, then let the restart through.
        with open(data / "valkey.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            os.kill(old, signal.SIGKILL)
            until(lambda: not healthy(base), "/healthz to say unhealthy", 10)
            status, body = http_json(f"{base}/healthz")
            assert status == 503 and body["redis"].startswith("down")
            time.sleep(HELD)
            assert http_json(f"{base}/api/v1/contacts/{contact['uuid']}")[0] == 503
            fcntl.flock(lock, fcntl.LOCK_UN)
        until(lambda: healthy(base), "/healthz to be healthy again", 20)
        assert served.proc is not None and served.proc.poll() is None  # never restarted
        new = int((data / "valkey.pid").read_text())
        assert new != old
        status, again = http_json(f"{base}/api/v1/contacts/{contact['uuid']}")
        assert status == 200 and again["uuid"] == contact["uuid"]  # its data came back with it
        assert http_json(f"{base}/api/v1/contacts", {"urn": "console:bea"})[0] == 201
        said = served.output().splitlines()[before:]
        assert "Traceback" not in "\n".join(said)
        # one line per loop (events x2, sends x2, timers, reclaim, starts) when it went and one
        # when it came back, the keeper's two, a few 503s: not hundreds a second
        assert len(said) < 40, "\n".join(said)
        assert any("is gone; starting it again" in line for line in said)
        assert any("embedded valkey-server is back" in line for line in said)
    assert served.proc.returncode == 0
    if new:
        with contextlib.suppress(ProcessLookupError):  # never leave a server behind
            os.kill(new, signal.SIGKILL)
