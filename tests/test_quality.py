"""The code stays typed and lint-clean: mypy strict and ruff run as part of the suite."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_mypy_strict_is_clean() -> None:
    result = _run(str(BIN / "mypy"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_lint_is_clean() -> None:
    result = _run(str(BIN / "ruff"), "check", "bot", "channels", "tests", "bench")
    assert result.returncode == 0, result.stdout + result.stderr


def test_test_modules_share_helpers_only_through_tests_support() -> None:
    """A helper one test module needs from another belongs in tests/support: importing a test
    module runs (and re-collects) its tests and ties unrelated files together."""
    tests = ROOT / "tests"
    offenders = []
    for path in sorted(tests.glob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                ours = name == "tests" or name.startswith("tests.") or name.startswith("test_")
                if (ours and not name.startswith("tests.support")) or name == "conftest":
                    offenders.append(f"{path.name}:{node.lineno} imports {name}")
    assert not offenders, offenders
