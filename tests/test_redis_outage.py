"""Redis goes away for 10 s in the middle of a group start: the server stays up, says it is
unhealthy, resumes, and nothing that was accepted is lost -- the start completes with every
contact started exactly once. Recovery waits for Redis only, never for a reclaim: each loop
first does again what it had read and not finished (the test puts the worker's reclaim out of
reach), and it logs one line when Redis goes and one when it is back."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from bot.store.embedded import EmbeddedValkey
from tests.support.serve import free_port
from tests.support.waiting import until

FLOW = """
nodes:
  - id: ask
    wait_for_reply: {}
    next: echo
  - id: echo
    send_message: {text: "got @input.text"}
    next: ask
"""
GREET = """
nodes:
  - id: hi
    send_message: {text: "hi @contact.name"}
    next: ask
  - id: ask
    wait_for_reply: {}
"""
CROWD = 300
AUTH = {"Authorization": "Bearer t"}


def get(url: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    request = urllib.request.Request(url, headers=AUTH)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def post(url: str, body: dict) -> tuple[int, dict]:  # type: ignore[type-arg]
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={**AUTH, "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def import_csv(url: str, rows: str) -> dict:  # type: ignore[type-arg]
    request = urllib.request.Request(
        url, data=rows.encode(), method="POST", headers={**AUTH, "Content-Type": "text/csv"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return dict(json.loads(response.read()))


def test_the_server_rides_out_a_redis_outage(tmp_path: Path) -> None:
    redis_port, port = free_port(), free_port()
    valkey = EmbeddedValkey(tmp_path / "redis", port=redis_port)
    url = valkey.start_sync()
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "echo.yaml").write_text(FLOW)
    (tmp_path / "flows" / "greet.yaml").write_text(GREET)
    config = tmp_path / "config.toml"
    config.write_text(
        f'[server]\nport = {port}\nadmin_token = "t"\n[redis]\nurl = "{url}"\n'
        '[channels.console]\ntype = "console"\n'
        # The worker's reclaim (lock TTL + 5 s) is out of reach: recovering from the outage
        # must not wait for any reclaim, only for Redis.
        '[engine]\nlock_ttl = "10m"\n'
    )
    base = f"http://127.0.0.1:{port}"
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "--config", str(config), "serve"], stdout=log, stderr=log
    )
    try:
        until(lambda: _healthy(base), "the server")
        status, contact = post(f"{base}/api/v1/contacts", {"urn": "console:ana", "name": "Ana"})
        assert status == 201
        cid = contact["uuid"]
        assert post(f"{base}/api/v1/contacts/{cid}/start", {"flow": "echo"})[0] == 202
        until(lambda: get(f"{base}/api/v1/contacts/{cid}/runs")[1]["runs"], "the run")
        rows = "urn,name,group\n" + "".join(f"console:c{i},C {i},crowd\n" for i in range(CROWD))
        assert import_csv(f"{base}/api/v1/contacts/import", rows)["created"] == CROWD
        status, start = post(
            f"{base}/api/v1/starts", {"flow": "greet", "groups": ["crowd"], "spread_over": "6s"}
        )
        assert status == 202
        start_url = f"{base}/api/v1/starts/{start['uuid']}"
        until(lambda: get(start_url)[1]["counts"]["started"] >= 50, "the start under way")

        valkey.stop_sync()  # Redis goes away mid-start (its AOF keeps what it had)
        stopped = time.monotonic()
        status, health = get(f"{base}/healthz")
        assert status == 503 and health["status"] == "unhealthy"
        assert health["redis"].startswith("down")
        status, body = get(f"{base}/api/v1/contacts/{cid}")
        assert status == 503 and body["error"]["code"] == "redis_unavailable"
        time.sleep(max(0.0, 10 - (time.monotonic() - stopped)))
        assert server.poll() is None  # still up

        valkey = EmbeddedValkey(tmp_path / "redis", port=redis_port)
        valkey.start_sync()  # back, with the same data
        until(lambda: _healthy(base), "health to come back")
        assert post(f"{base}/api/v1/contacts/{cid}/start", {"flow": "echo"})[0] == 202

        def runs() -> list[dict]:  # type: ignore[type-arg]
            found = get(f"{base}/api/v1/contacts/{cid}/runs")[1]["runs"]
            return found if len(found) == 2 else []

        first, second = until(runs, "the second run after the outage")
        assert first["status"] == "waiting" and second["status"] == "interrupted"

        def finished() -> dict:  # type: ignore[type-arg]
            record = get(start_url)[1]
            done = record["status"] == "completed" and record["messages"]["sent"] == CROWD
            return record if done else {}

        record = until(finished, "the start to complete after the outage", timeout=30)
        assert record["counts"]["started"] == CROWD and record["counts"]["failed"] == 0
        status, page = get(f"{base}/api/v1/runs?flow=greet&limit=500")
        assert status == 200 and page["next"] is None
        assert len({r["contact"] for r in page["runs"]}) == len(page["runs"]) == CROWD
        said = (tmp_path / "serve.log").read_text()
        assert "Traceback" not in said  # each loop: one line when Redis goes, one when back
        assert said.count("Redis unreachable") <= 12, said
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
        valkey.stop_sync()


def _healthy(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False
