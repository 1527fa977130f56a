"""A conversation test case names the channel it runs on (``channel:``): the same flow file is
tested on a channel with templates and buttons and on one without."""

from __future__ import annotations

from pathlib import Path

from bot.convtest.runner import CaseResult, run_file
from bot.core.config import Config, load_config

ROOT = Path(__file__).resolve().parent.parent

FLOW = """\
name: Ask
language: es
nodes:
  - id: ask
    send_message:
      text: "Hola @contact.first_name, ¿todo bien?"
      quick_replies: ["Sí", "No"]
      template: {name: greeting, body: ["@contact.first_name"]}
    next: answer
  - id: answer
    wait_for_reply:
      result: mood
      cases:
        - {has_any_word: [si], category: Good, next: glad}
      other: {category: Other}
  - id: glad
    send_message: {text: "¡Qué bien!"}
"""

CASES = """\
flow: ask
name: console
channel: console
contact: {name: Ana}
steps:
  - bot: "Hola Ana, ¿todo bien?\\n\\n1. Sí\\n2. No"
  - user: "1"
  - bot: "¡Qué bien!"
results: {mood: Good}
---
flow: ask
name: whatsapp
channel: whatsapp
contact: {name: Ana}
steps:
  - bot: {template: greeting, body: [Ana]}
  - user: "Sí"
  - bot: "¡Qué bien!"
results: {mood: Good}
---
flow: ask
name: an unknown channel
channel: carrier-pigeon
steps: [{wait: 1h}]
---
flow: ask
name: a URN the channel does not reach
channel: console
contact: {urn: "whatsapp:+5511900000001"}
steps: [{wait: 1h}]
"""


async def _run(tmp_path: Path, valkey_url: str, config: Config) -> dict[str, CaseResult]:
    flows = tmp_path / "flows"
    (flows / "tests").mkdir(parents=True)
    (flows / "ask.yaml").write_text(FLOW, encoding="utf-8")
    path = flows / "tests" / "ask.yaml"
    path.write_text(CASES, encoding="utf-8")
    results = await run_file(path, flows, redis_url=valkey_url, config=config)
    return {str(r.case.name): r for r in results}


async def test_one_flow_tested_on_two_channels(tmp_path: Path, valkey_url: str) -> None:
    for config in (Config(), load_config(ROOT / "config.toml", environ={})):
        results = await _run(tmp_path / str(id(config)), valkey_url, config)
        assert results["console"].passed, results["console"].report()
        assert results["whatsapp"].passed, results["whatsapp"].report()
        unknown = results["an unknown channel"]
        assert not unknown.passed
        assert "'carrier-pigeon' is neither a configured channel" in unknown.report()
        wrong = results["a URN the channel does not reach"]
        assert not wrong.passed and "reaches console URNs" in wrong.report()
