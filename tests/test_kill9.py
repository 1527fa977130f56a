"""kill -9 in the middle of conversations: what was acknowledged is handled exactly once.

``chasqui serve`` runs as a subprocess on the shipped ``config.toml`` (embedded Valkey in the
tmp dir's ``var/``, the WhatsApp channel), with three overrides through ``CHASQUI_*``: the port,
the admin token, and ``engine.lock_ttl = 4s`` so that work the dead process held is taken over in
seconds, not the default minute. The channel's Graph API is the WhatsApp sandbox in a process
of its own (``chasqui sandbox``), so that what reached "Meta" survives the kill: its
``/_fake/sent`` records are the ground truth of sends.

50 contacts open their window through the sandbox and are started in a flow that asks and waits
(each answer is echoed, then it waits again). Then every contact sends its answers as Meta sends
webhooks -- the exact bytes, signed with the app secret the way the sandbox signs them -- one
after the other, all contacts at once. When about half have been acknowledged, the server gets
SIGKILL; a new ``chasqui serve`` starts on the same data dir, and every webhook is delivered
again (Meta redelivers what was not acknowledged, and sometimes what was), the rest for the first
time.

What "acknowledged" means: a 200 to a webhook is answered after the event is queued in Valkey
(deduplicated by wamid). Valkey is its own process and survives the kill (checked: same pid); its
AOF is fsync'd every second, so a 200 survives the death of Chasqui but not, for up to about a
second, the death of the machine (or a kill -9 of Valkey itself). See docs/redis.md.

What must hold: every acknowledged webhook is handled exactly once (one inbound message and one
reply per wamid on the contact's history, none twice), unacknowledged ones redelivered are not
handled twice either, and every reply is sent -- its wamid is among the sandbox's records. A reply
whose send was in flight at the kill may reach the sandbox twice (Meta's API has no idempotency
key): that is counted, and bounded by one per contact.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.store import Store
from bot.store.redisconn import connect
from channels.whatsapp.sandbox import encode, sign
from channels.whatsapp.sandbox.config import DEMO_APP_SECRET as SECRET
from tests.support.serve import free_port, healthy
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "kill9-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PNID, WABA, DISPLAY = "318207746650091", "230918475512034", "15550142200"
CONTACTS = 50
ANSWERS = 4  # webhooks per contact after the start
ECHO = """\
name: Echo
language: es
nodes:
  - id: hello
    send_message: {text: "¿Qué nos contás?"}
    next: ask
  - id: ask
    wait_for_reply: {}
    next: echo
  - id: echo
    send_message: {text: "recibido @input.text"}
    next: ask
"""

pytestmark = pytest.mark.timeout(150)  # ~15 s alone; a loaded machine is slower


def phone(i: int) -> str:
    return f"5511966{i:06d}"


def webhook(i: int, n: int, at: int) -> bytes:
    """Meta's bytes for contact ``i``'s ``n``-th answer (its wamid is unique and stable)."""
    message = {
        "from": phone(i),
        "id": f"wamid.KILL9.{i:03d}.{n}",
        "timestamp": str(at),
        "type": "text",
        "text": {"body": f"c{i} a{n}"},
    }
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": DISPLAY, "phone_number_id": PNID},
        "contacts": [{"profile": {"name": f"C {i}"}, "wa_id": phone(i)}],
        "messages": [message],
    }
    changes = [{"value": value, "field": "messages"}]
    return encode(
        {"object": "whatsapp_business_account", "entry": [{"id": WABA, "changes": changes}]}
    )


class Proc:
    """A subprocess with its output in a log file."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str]) -> None:
        self.log = log
        with log.open("a") as out:
            self.p = subprocess.Popen(argv, stdout=out, stderr=out, env=env, cwd=log.parent)

    def end(self, sig: int) -> int:
        if self.p.poll() is None:
            os.kill(self.p.pid, sig)
        return self.p.wait(timeout=30)


def stop_valkey(pidfile: Path) -> None:
    """SIGTERM the embedded Valkey if a failed test left it running (the last server to stop
    normally shuts it down itself)."""
    with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
        os.kill(int(pidfile.read_text()), signal.SIGTERM)


async def test_kill9_mid_conversation_loses_and_repeats_nothing(tmp_path: Path) -> None:
    port, sandbox_port = free_port(), free_port()
    base, sandbox = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{sandbox_port}"
    shutil.copy(ROOT / "config.toml", tmp_path / "config.toml")
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "echo.yaml").write_text(ECHO, encoding="utf-8")
    env = {
        **os.environ,
        "CHASQUI_SERVER__PORT": str(port),
        "CHASQUI_SERVER__ADMIN_TOKEN": TOKEN,
        "CHASQUI_ENGINE__LOCK_TTL": "4s",
        "CHASQUI_CHANNELS__WHATSAPP__GRAPH_URL": sandbox,
        "CHASQUI_CHANNELS__WHATSAPP__APP_SECRET": SECRET,  # `chasqui sandbox` signs with it
    }
    cli = [sys.executable, "-m", "bot.cli", "--config", str(tmp_path / "config.toml")]
    webhook_url = f"{base}/webhooks/whatsapp/whatsapp"
    sandbox_argv = [*cli[:3], "sandbox", "--port", str(sandbox_port), "--webhook-url", webhook_url]
    fake = Proc([*sandbox_argv, "--no-statuses", "--no-pair-rate"], tmp_path / "sandbox.log", env)
    servers: list[Proc] = []

    async def serve() -> Proc:
        server = Proc([*cli, "serve"], tmp_path / "serve.log", env)
        servers.append(server)

        async def up() -> bool:
            assert server.p.poll() is None, server.log.read_text()
            return await asyncio.to_thread(healthy, base)

        await wait_for(up, "the server", timeout=30, every=0.05)
        return server

    async with aiohttp.ClientSession() as http:

        async def api(method: str, path: str, body: Any = None) -> Any:
            async with http.request(method, base + path, json=body, headers=AUTH) as r:
                assert r.status < 300, await r.text()
                return await r.json()

        async def fake_api(method: str, path: str, body: Any = None) -> Any:
            url = f"{sandbox}/_fake/{path}"  # the admin token: `chasqui sandbox` reads the server's
            async with http.request(method, url, json=body, headers=AUTH) as r:
                assert r.status == 200, await r.text()
                return await r.json()

        async def sandbox_up() -> bool:
            assert fake.p.poll() is None, fake.log.read_text()
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{sandbox}/_fake/clock", headers=AUTH) as r:
                    return r.status == 200
            return False

        try:
            server = await serve()
            await wait_for(sandbox_up, "the sandbox", timeout=30, every=0.05)
            valkey_pid = int((tmp_path / "var" / "valkey.pid").read_text())
            # each contact opens its window through the sandbox, then is started in the flow
            for i in range(CONTACTS):
                sent = await fake_api("POST", "inbound", {"from": phone(i), "text": "hola"})
                assert sent["delivery"]["status"] == 200, sent
            urns = [f"whatsapp:+{phone(i)}" for i in range(CONTACTS)]
            start = await api("POST", "/api/v1/starts", {"flow": "echo", "urns": urns})

            async def started() -> bool:
                record = await api("GET", f"/api/v1/starts/{start['uuid']}")
                return bool(record["messages"]["sent"] == CONTACTS)

            await wait_for(started, "the questions to be sent", timeout=20)

            # the answers, as webhooks: contact by contact in order, all contacts at once
            acked: set[tuple[int, int]] = set()
            half = CONTACTS * ANSWERS // 2
            killed = asyncio.Event()

            async def post(i: int, n: int) -> bool:
                raw = webhook(i, n, int(time.time()))
                headers = {
                    "Content-Type": "application/json",
                    "X-Hub-Signature-256": sign(raw, SECRET),
                }
                try:
                    async with http.post(webhook_url, data=raw, headers=headers) as r:
                        ok = r.status == 200
                except aiohttp.ClientError:
                    ok = False
                if ok:
                    acked.add((i, n))
                return ok

            async def talk(i: int) -> None:
                for n in range(ANSWERS):
                    if killed.is_set() or not await post(i, n):
                        return
                    if len(acked) >= half and not killed.is_set():
                        killed.set()
                        server.end(signal.SIGKILL)  # no shutdown code runs

            await asyncio.gather(*(talk(i) for i in range(CONTACTS)))
            assert killed.is_set() and server.p.returncode == -9
            assert half <= len(acked) < CONTACTS * ANSWERS
            acked_at_kill = len(acked)
            # Valkey is its own process: the kill did not take it down
            os.kill(valkey_pid, 0)

            await serve()
            assert int((tmp_path / "var" / "valkey.pid").read_text()) == valkey_pid
            # Meta redelivers what was not acknowledged, and may redeliver what was; the
            # contacts go on with the rest
            before = set(acked)
            for i in range(CONTACTS):
                for n in range(ANSWERS):
                    assert await post(i, n), f"contact {i} answer {n} refused after restart"
            assert before and before != acked

            redis = connect((tmp_path / "var" / "valkey.url").read_text().strip())
            try:
                cids = await Store(redis).contact_ids_for_urns(urns)
            finally:
                await redis.aclose()
            assert None not in cids

            async def history(i: int) -> list[dict[str, Any]]:
                body = await api("GET", f"/api/v1/contacts/{cids[i]}/messages?limit=100")
                return list(body["messages"])

            expected_out = 1 + ANSWERS  # the question, then one echo per answer

            async def all_handled() -> dict[int, list[dict[str, Any]]]:
                found = {i: await history(i) for i in range(CONTACTS)}
                done = all(
                    len([m for m in msgs if m["direction"] == "out" and m["status"] == "sent"])
                    >= expected_out
                    for msgs in found.values()
                )
                return found if done else {}

            histories = await wait_for(all_handled, "every reply to be sent", timeout=40, every=0.5)
            records = (await fake_api("GET", "sent"))["data"]
        finally:
            for proc in reversed(servers):
                proc.end(signal.SIGTERM)
            fake.end(signal.SIGTERM)
            stop_valkey(tmp_path / "var" / "valkey.pid")

    # what reached "Meta": accepted sends, by recipient and text
    reached = collections.Counter(
        (r["body"]["to"].lstrip("+"), r["body"]["text"]["body"])
        for r in records
        if r.get("http_status") == 200
    )
    for i, msgs in histories.items():
        inbound = [m["text"] for m in msgs if m["direction"] == "in" and m["text"] != "hola"]
        out = [m for m in msgs if m["direction"] == "out"]
        answers = [f"c{i} a{n}" for n in range(ANSWERS)]
        # every answer handled exactly once and echoed once
        assert sorted(inbound) == sorted(answers), (i, inbound)
        texts = ["¿Qué nos contás?", *(f"recibido {a}" for a in answers)]
        assert sorted(m["text"] for m in out) == sorted(texts), (i, out)
        for m in out:  # every reply sent, and the sandbox accepted it
            assert m["status"] == "sent" and reached[(phone(i), m["text"])] >= 1, (i, m)
    # a send in flight at the kill may have reached the sandbox twice; never more than that
    assert max(reached.values()) <= 2, [k for k, n in reached.items() if n > 2]
    resent = sum(n - 1 for n in reached.values())
    assert resent <= CONTACTS, resent
    print(
        f"kill -9 with {acked_at_kill} of {CONTACTS * ANSWERS} answers acknowledged; "
        f"{resent} replies reached the sandbox twice"
    )
