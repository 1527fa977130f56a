"""``chasqui simulate FLOW``: chat with a flow in the terminal, on the real engine and Redis.

The simulated contact has a ``console:`` URN; its messages travel through the console channel
(a Redis stream per contact), so the chat works whether this process or a running
``chasqui serve`` on the same Redis applies the events. Templates are shown as rendered and
quick replies as numbered choices (type the number or the text).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from bot.core.config import Config
from bot.engine.events import Reply, Start
from bot.work.runtime import Runtime

HELP = "type a reply; /quit to leave, /restart to start over"


def render_message(message: dict[str, Any]) -> list[str]:
    """The lines a person reads for one outgoing message."""
    lines: list[str] = []
    template = message.get("template")
    if template:
        body = template.get("body")
        params = ", ".join(body.values() if isinstance(body, dict) else body)
        lines.append(f"[template {template['name']} ({template['language']}): {params}]")
    if message.get("text"):
        lines.append(message["text"])
    if message.get("attachment"):
        lines.append(f"[attachment {message['attachment']}]")
    for i, reply in enumerate(message.get("quick_replies") or [], 1):
        lines.append(f"  ({i}) {reply}")
    return lines


async def _read_line(prompt: str) -> str | None:
    try:
        return await asyncio.to_thread(input, prompt)
    except EOFError:
        return None


async def simulate(config: Config, flow_id: str, name: str, urn: str | None) -> int:
    runtime = Runtime(config)
    report = runtime.load_flows()
    if flow_id not in runtime.registry.flows:
        for problem in report.problems:
            print(problem, file=sys.stderr)
        print(
            f"no valid flow {flow_id!r}; flows: {', '.join(sorted(runtime.registry.flows))}",
            file=sys.stderr,
        )
        return 1
    await runtime.start()
    try:
        store = runtime.store
        contact, _ = await store.contact_for_urn(
            urn or f"console:{name.lower()}", name, runtime.clock.now()
        )
        cid = contact["uuid"]
        last = "$"
        choices: list[str] = []
        print(f"chatting with {flow_id} as {name} ({HELP})")
        await store.enqueue(cid, Start(flow=flow_id, at=runtime.clock.now()).encode())
        while True:
            # show what the flow says until it has been quiet for a moment
            while True:
                entries = await store.console_read(cid, last, 700)
                if not entries:
                    break
                for entry_id, message in entries:
                    last = entry_id
                    for line in render_message(message):
                        print(f"bot> {line}")
                    choices = message.get("quick_replies") or choices
            text = await _read_line("you> ")
            if text is None or text.strip() == "/quit":
                return 0
            text = text.strip()
            now = runtime.clock.now()
            event: Start | Reply
            if text == "/restart":
                event = Start(flow=flow_id, at=now)
            elif text.isdigit() and 0 < int(text) <= len(choices):
                event = Reply(text=choices[int(text) - 1], channel="console", at=now)
            else:
                event = Reply(text=text, channel="console", at=now)
            await store.enqueue(cid, event.encode())
    finally:
        await runtime.stop()
