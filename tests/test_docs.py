"""The docs' examples are true: the conversation tests shown in docs/testing-flows.md pass
against the shipped flows, so a reader who copies them sees PASS, not a surprise."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.convtest.runner import run_file
from bot.core.config import load_config

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_TEST = re.compile(r"```yaml\n(# flows/tests/[^\n]*\n.*?)```", re.DOTALL)


def shipped_examples(doc: str) -> list[str]:
    """The YAML blocks of ``doc`` that say they are a shipped test file."""
    return SHIPPED_TEST.findall((ROOT / "docs" / doc).read_text(encoding="utf-8"))


def test_the_testing_guide_shows_a_shipped_example() -> None:
    assert shipped_examples("testing-flows.md"), "the first example is gone or lost its header"


@pytest.mark.parametrize("block", shipped_examples("testing-flows.md"))
async def test_the_testing_guide_examples_pass(block: str, tmp_path: Path, valkey_url: str) -> None:
    case_file = tmp_path / "example.yaml"
    case_file.write_text(block, encoding="utf-8")
    config = load_config(ROOT / "config.toml", environ={})
    results = await run_file(case_file, ROOT / "flows", redis_url=valkey_url, config=config)
    assert results, "the example holds no case"
    failed = [r.report() for r in results if not r.passed]
    assert not failed, "\n".join(failed)
