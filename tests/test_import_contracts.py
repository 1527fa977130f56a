"""The import contracts of pyproject.toml (``[tool.importlinter]``) hold and cover every channel."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_import_contracts_are_kept() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_every_channel_package_is_under_the_channel_contracts() -> None:
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    by_name = {c["name"]: c for c in contracts["contracts"]}
    packages = sorted(
        f"channels.{p.name}" for p in (ROOT / "channels").iterdir() if (p / "__init__.py").exists()
    )
    only_protocol = by_name["A channel imports only the channel protocol and its own package"]
    assert sorted(only_protocol["source_modules"]) == packages
    assert sorted(by_name["Channel packages are independent of each other"]["modules"]) == packages
    no_type = by_name[
        "bot names no channel type: it reaches channels through channels.protocol alone"
    ]
    assert sorted(no_type["forbidden_modules"]) == packages


def test_every_package_of_bot_is_in_a_layer() -> None:
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c for c in contracts["contracts"] if c["type"] == "layers"]
    named = {name.strip() for layer in layers["layers"] for name in layer.split("|")}
    packages = {p.name for p in (ROOT / "bot").iterdir() if (p / "__init__.py").exists()}
    assert packages == named, "a package of bot/ that no layer names is held by no contract"
