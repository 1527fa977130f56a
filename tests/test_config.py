"""``load_config``: defaults, the shipped file, env overrides, ``env:VAR`` secrets, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.core.config import ChannelConfig, Config, ConfigError, load_config

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "chasqui.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_when_there_is_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./config.toml here
    config = load_config(None, {})
    assert config.server.host == "127.0.0.1"
    assert config.server.port == 8080
    assert config.server.admin_token.get_secret_value() == ""
    assert config.redis.url.get_secret_value() == ""
    assert config.flows.path == Path("flows")
    assert config.engine.max_steps_per_event == 100
    assert config.channels == {}
    assert config.base_dir == tmp_path.resolve()
    assert config.resolve(config.flows.path) == tmp_path.resolve() / "flows"


def test_the_repository_config_loads() -> None:
    config = load_config(REPO / "config.toml", {})
    assert config.base_dir == REPO
    assert config.server.port == 8080
    assert config.engine.loop_window == "5m"
    assert set(config.channels) == {"console", "whatsapp"}
    assert config.channels["console"] == ChannelConfig(type="console")
    whatsapp = config.channels["whatsapp"]
    assert whatsapp.type == "whatsapp" and whatsapp.model_extra is not None
    assert whatsapp.model_extra["graph_url"] == "sandbox"  # runs with no Meta account
    assert config.resolve(config.flows.path) == REPO / "flows"
    assert config.resolve(config.redis.data_dir) == REPO / "var"


def test_environment_overrides_a_setting(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = 8081\n")
    config = load_config(
        path, {"CHASQUI_SERVER__PORT": "9000", "CHASQUI_ENGINE__MAX_STEPS_PER_EVENT": "3"}
    )
    assert config.server.port == 9000
    assert config.engine.max_steps_per_event == 3


def test_environment_can_configure_a_channel_from_nothing(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, ""),
        {"CHASQUI_CHANNELS__WA__TYPE": "console", "CHASQUI_CHANNELS__WA__ACCESS_TOKEN": "s3"},
    )
    assert config.channels["wa"].type == "console"
    assert config.channels["wa"].model_extra == {"access_token": "s3"}


def test_config_path_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = 7000\n")
    assert load_config(None, {"CHASQUI_CONFIG": str(path)}).server.port == 7000


def test_env_references_are_resolved(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[server]\nadmin_token = "env:MY_TOKEN"\n'
        '[channels.wa]\ntype = "console"\naccess_token = "env:WA_TOKEN"\n',
    )
    config = load_config(path, {"MY_TOKEN": "t0k3n", "WA_TOKEN": "w4"})
    assert config.server.admin_token.get_secret_value() == "t0k3n"
    assert "t0k3n" not in repr(config)  # a secret does not leak into logs
    assert config.channels["wa"].model_extra == {"access_token": "w4"}


def test_env_reference_to_an_unset_variable_is_a_clear_error(tmp_path: Path) -> None:
    path = write(tmp_path, '[channels.wa]\ntype = "console"\naccess_token = "env:WA_TOKEN"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert str(info.value) == "channels.wa.access_token: environment variable WA_TOKEN is not set"


def test_an_override_may_itself_be_an_env_reference(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, ""), {"CHASQUI_SERVER__ADMIN_TOKEN": "env:SECRET", "SECRET": "abc"}
    )
    assert config.server.admin_token.get_secret_value() == "abc"


@pytest.mark.parametrize(
    ("text", "environ", "setting"),
    [
        ("[server]\nprot = 9000\n", {}, "server.prot"),
        ("[sever]\nport = 9000\n", {}, "sever"),
        ("", {"CHASQUI_ENGINE__MAX_STEPS": "5"}, "engine.max_steps"),
    ],
)
def test_unknown_settings_are_refused(
    tmp_path: Path, text: str, environ: dict[str, str], setting: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ)
    assert str(info.value) == f"{path}: {setting}: unknown setting"


def test_invalid_values_name_the_setting(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nport = 70000\n[engine]\nloop_window = "soon"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    message = str(info.value)
    assert message.startswith(f"{path}: server.port: Input should be less than or equal to 65535")
    assert "engine.loop_window: Value error, bad duration 'soon'" in message


def test_invalid_toml(tmp_path: Path) -> None:
    path = write(tmp_path, "[server\n")
    with pytest.raises(ConfigError, match=r"chasqui\.toml: .*\(at line 1, column 8\)"):
        load_config(path, {})


def test_override_through_a_value_that_is_not_a_section(tmp_path: Path) -> None:
    path = write(tmp_path, "flows = 3\n")
    with pytest.raises(ConfigError, match="CHASQUI_FLOWS__PATH: flows is not a section"):
        load_config(path, {"CHASQUI_FLOWS__PATH": "x"})


def test_an_explicit_config_that_does_not_exist_fails(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(missing, {})
    assert str(info.value) == f"{missing}: no such config file"
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(None, {"CHASQUI_CONFIG": str(missing)})


def test_a_config_built_in_code_needs_no_file(tmp_path: Path) -> None:
    config = Config.model_validate({"flows": {"path": str(tmp_path)}, "base_dir": "/elsewhere"})
    assert config.resolve(config.flows.path) == tmp_path  # absolute paths stay as they are
    assert config.resolve(Path("var")) == Path("/elsewhere/var")
