"""docs/channels/http.md's example receiver and sender work against a real Chasqui: the
receiver (run as the doc shows, a process of its own) gets the flow's messages and checks their
signatures; the sender's messages reach the flow."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import types
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.api import MakeApi
from tests.support.receiver import ECHO, SECRET, WEBHOOK
from tests.support.serve import free_port
from tests.support.waiting import wait_for

DOC = Path(__file__).resolve().parent.parent / "docs" / "channels" / "http.md"
SNIPPET = re.compile(r"```python\n# (\w+\.py)\n(.*?)```", re.DOTALL)


def snippets() -> dict[str, str]:
    return dict(SNIPPET.findall(DOC.read_text(encoding="utf-8")))


def test_the_doc_shows_both_snippets() -> None:
    found = snippets()
    assert set(found) == {"receiver.py", "send.py"}
    assert len(found["receiver.py"].splitlines()) <= 30  # an example, not a program


@pytest.fixture
def receiver() -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", snippets()["receiver.py"]],
        env={**os.environ, "CHASQUI_SECRET": SECRET, "PORT": str(port)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # http.server logs every request there
        text=True,
    )
    try:
        yield process, port
    finally:
        process.terminate()
        process.wait(10)
        assert process.stdout is not None
        process.stdout.close()


async def test_the_example_receiver_and_sender(
    make_api: MakeApi,
    receiver: tuple[subprocess.Popen[str], int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    process, port = receiver
    assert process.stdout is not None
    monkeypatch.setenv("CHASQUI_SECRET", SECRET)
    example: dict[str, Any] = {"__name__": "receiver"}
    exec(snippets()["receiver.py"], example)
    monkeypatch.setitem(sys.modules, "receiver", _module(example))
    exec(snippets()["send.py"], example)
    say = example["say"]

    channel = {
        "type": "http",
        "send_url": f"http://127.0.0.1:{port}/",
        "secret": SECRET,
        "allow_private": True,
    }
    api = await make_api({"echo": ECHO}, channels={"web": channel})
    url = str(api.client.make_url(WEBHOOK))
    assert await asyncio.to_thread(say, url, "crm-42", "hola", "msg-1") == 200
    cid = await _contact(api)
    status, _ = await api.post(f"/api/v1/contacts/{cid}/start", {"flow": "echo"})
    assert status in (200, 201, 202)
    greeting = await _printed(process)
    # the example sends no name: the contact has none
    assert (greeting["to"], greeting["text"], greeting["quick_replies"]) == (
        "crm-42",
        "Hola ",
        ["Sí", "No"],
    )
    assert await asyncio.to_thread(say, url, "crm-42", "Sí", "msg-2") == 200
    assert (await _printed(process))["text"] == "got Sí"
    # what the receiver refuses: a post nobody signed
    forged = urllib.request.Request(
        f"http://127.0.0.1:{port}/",
        data=b'{"to": "crm-42", "text": "forged"}',
        headers={"webhook-id": "x", "webhook-timestamp": "1", "webhook-signature": "v1,AAAA"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        await asyncio.to_thread(urllib.request.urlopen, forged)
    assert refused.value.code == 401
    refused.value.close()


def _module(namespace: dict[str, Any]) -> types.ModuleType:
    module = types.ModuleType("receiver")
    module.__dict__.update(namespace)
    return module


async def _contact(api: Any) -> str:
    found = await wait_for(lambda: api.store.contact_id_for_urn("ext:crm-42"), "the contact")
    return str(found)


async def _printed(process: subprocess.Popen[str]) -> dict[str, Any]:
    assert process.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 10)
    printed: dict[str, Any] = json.loads(line)
    return printed
