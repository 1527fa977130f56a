"""The ``chasqui`` command line: ``check`` exit codes and output, ``serve`` refusing bad flows."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bot.cli.main import main

REPO = Path(__file__).resolve().parent.parent
GOOD = "name: Good\nnodes:\n  - id: a\n    send_message: {text: hi}\n"


def write_config(tmp_path: Path, flows: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            [flows]
            path = "{flows}"
            [redis]
            data_dir = "{tmp_path / "var"}"
            [channels.console]
            type = "console"
            """
        )
    )
    return path


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    folder = tmp_path / "flows"
    folder.mkdir()
    return folder


def test_check_passes_on_the_shipped_flows(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(REPO / "config.toml"), "check"]) == 0
    out, err = capsys.readouterr()
    shipped = sorted(p.stem for p in (REPO / "flows").glob("*.yaml"))
    assert "order_followup" in shipped
    assert out == f"{len(shipped)} flow file(s) OK: {', '.join(shipped)}\n"
    # on a fresh checkout no templates are synced yet: said once, not an error
    assert err in ("", "templates not checked: none synced yet (chasqui templates sync)\n")


def test_check_lists_every_problem_and_exits_1(
    tmp_path: Path, flows: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (flows / "good.yaml").write_text(GOOD)
    (flows / "bad.yaml").write_text(
        "nodes:\n  - id: a\n    send_message: {text: hi}\n    next: nope\n"
        "  - id: b\n    update_contact: {channel: sms}\n"
    )
    (flows / "broken.yaml").write_text("nodes: [\n")
    config = write_config(tmp_path, flows)
    assert main(["--config", str(config), "check"]) == 1
    out, err = capsys.readouterr()
    bad, broken = flows / "bad.yaml", flows / "broken.yaml"
    assert out.splitlines() == [
        f"{bad}:4: nodes[0] (a): next: unknown node 'nope'",
        f"{bad}:6: nodes[1] (b): update_contact.channel: unknown channel 'sms' (channels: console)",
        f"{broken}:2: invalid YAML: expected the node content, but found '<stream end>'"
        " (while parsing a flow node at line 2)",
    ]
    assert err.strip() == "3 problem(s) in 3 flow file(s)"


def test_check_a_path_given_on_the_command_line(
    tmp_path: Path, flows: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (flows / "good.yaml").write_text(GOOD)
    config = write_config(tmp_path, tmp_path / "elsewhere")
    assert main(["--config", str(config), "check", str(flows)]) == 0
    assert capsys.readouterr().out == "1 flow file(s) OK: good\n"


def test_check_a_single_file_looks_up_enter_flow_beside_it(
    tmp_path: Path, flows: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (flows / "child.yaml").write_text(GOOD)
    parent = flows / "parent.yaml"
    parent.write_text("nodes:\n  - id: go\n    enter_flow: child\n")
    lost = flows / "lost.yaml"
    lost.write_text("nodes:\n  - id: go\n    enter_flow: nowhere\n")
    (flows / "other_bad.yaml").write_text("nodes: []\n")  # not the file being checked
    config = write_config(tmp_path, flows)

    assert main(["--config", str(config), "check", str(parent)]) == 0
    assert capsys.readouterr().out == "1 flow file(s) OK: parent\n"

    assert main(["--config", str(config), "check", str(lost)]) == 1
    out, err = capsys.readouterr()
    assert out == f"{lost}:3: nodes[0] (go): enter_flow.flow: unknown flow 'nowhere'\n"
    assert err.strip() == "1 problem(s) in 1 flow file(s)"


def test_check_a_missing_path_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, tmp_path / "flows")
    assert main(["--config", str(config), "check", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err == f"{tmp_path / 'nope'}: no such file or folder\n"


def test_a_config_error_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(tmp_path / "missing.toml"), "check"]) == 2
    assert capsys.readouterr().err == (
        f"config error: {tmp_path / 'missing.toml'}: no such config file\n"
    )


def test_serve_refuses_to_start_with_invalid_flows(
    tmp_path: Path, flows: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (flows / "good.yaml").write_text(GOOD)
    bad = flows / "bad.yaml"
    bad.write_text("nodes:\n  - id: a\n    wait_for_reply: {timeout: soon}\n")
    config = write_config(tmp_path, flows)
    assert main(["--config", str(config), "serve"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"{bad}:3: nodes[0] (a): wait_for_reply.timeout: "
        "bad duration 'soon': write e.g. 30s, 5m, 24h, 3d",
        "refusing to start: fix the flows above (chasqui check)",
    ]
    assert not (tmp_path / "var").exists()  # it stopped before starting Valkey


def test_help_speaks_plain_text(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "usage: chasqui" in out
    assert "``" not in out  # reStructuredText markup from a docstring is not for a terminal
