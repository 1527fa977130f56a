"""Configuration: ``config.toml`` read into pydantic models.

Secrets may be written ``env:VAR`` so that they never live in a file kept in git. Any single
setting can be overridden with an environment variable ``CHASQUI_<SECTION>__<KEY>`` (double
underscore between levels), e.g. ``CHASQUI_SERVER__PORT=9000`` or
``CHASQUI_CHANNELS__WHATSAPP__ACCESS_TOKEN=...``; this is how containers configure it.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from bot.core.durations import Duration
from bot.core.validation import summary

ENV_PREFIX = "CHASQUI_"
DEFAULT_CONFIG = "config.toml"


class ConfigError(Exception):
    """The configuration cannot be used; the message says which setting and why."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    # Empty: a token is generated on first start and kept in <redis.data_dir>/admin-token.
    admin_token: SecretStr = SecretStr("")
    max_body_bytes: int = 1024 * 1024
    # Serving processes on this machine, all on the same port and Redis (one per core is a
    # good start); each runs the webhooks, the API and its share of the work.
    processes: int = Field(1, ge=1, le=64)
    # How this server is reached (webhook URLs of the sandbox); empty: http://host:port
    public_url: str = ""
    # Seconds a client may take to send a request's head (line and headers), and may let its
    # body stall between two chunks, before its connection is closed (slowloris guard).
    read_timeout: float = Field(15.0, gt=0, le=3600)

    @property
    def url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"


class RedisConfig(_Section):
    # Empty: start (or share) the embedded Valkey whose data lives in data_dir.
    url: SecretStr = SecretStr("")
    data_dir: Path = Path("var")


class FlowsConfig(_Section):
    path: Path = Path("flows")


class EngineConfig(_Section):
    """Limits that keep one bad flow from hurting everyone else."""

    max_steps_per_event: int = Field(100, ge=1)
    loop_repeats: int = Field(20, ge=2)  # the same text this many times ...
    loop_window: Duration = "5m"  # ... within this window fails the run as a loop
    default_expire_after: Duration = "7d"
    max_reply_age: Duration = "1h"  # older inbound messages (late webhook retries) are not answered
    lock_ttl: Duration = "60s"  # a crashed worker's contact lock frees itself after this
    webhook_allow_private: bool = False  # call_webhook may reach loopback/private addresses


class ContactsConfig(_Section):
    """Opt-out: per language, words that (as the whole message) opt a contact out or back in,
    and the confirmation sent. Each language given replaces that language's defaults (STOP,
    PARAR, SAIR, BAJA, CANCELAR, ...; see docs/contacts.md); an empty list turns it off."""

    stop_words: dict[str, list[str]] = Field(default_factory=dict)
    start_words: dict[str, list[str]] = Field(default_factory=dict)
    stop_confirmation: dict[str, str] = Field(default_factory=dict)
    start_confirmation: dict[str, str] = Field(default_factory=dict)


class ChannelConfig(BaseModel):
    """One channel; ``type`` picks the module in ``channels/``, other keys belong to it."""

    model_config = ConfigDict(extra="allow")
    type: str


class StudioToken(_Section):
    """A named Studio sign-in: its token, and whether it may change things or only look."""

    token: SecretStr
    role: Literal["read", "full"] = "read"


class StudioConfig(_Section):
    # "auto" follows the browser's Accept-Language among the languages Studio has.
    language: Literal["auto", "en", "es", "pt"] = "auto"
    # A signed-in session lasts this long without use (each page view renews it).
    session_idle: Duration = "12h"
    # Named sign-ins besides the admin token (which signs in as "admin", full):
    # [studio.tokens.maria] token = "env:MARIA_TOKEN", role = "read"
    tokens: dict[str, StudioToken] = Field(default_factory=dict)

    @field_validator("tokens")
    @classmethod
    def _admin_is_taken(cls, tokens: dict[str, StudioToken]) -> dict[str, StudioToken]:
        if "admin" in tokens:
            raise ValueError('"admin" is the admin token\'s sign-in; name this one otherwise')
        return tokens


class Config(_Section):
    server: ServerConfig = ServerConfig()
    redis: RedisConfig = RedisConfig()
    flows: FlowsConfig = FlowsConfig()
    engine: EngineConfig = EngineConfig()
    contacts: ContactsConfig = ContactsConfig()
    studio: StudioConfig = StudioConfig()
    channels: dict[str, ChannelConfig] = Field(default_factory=dict)
    base_dir: Path = Path(".")  # the config file's folder: relative paths start here

    def resolve(self, path: Path) -> Path:
        return path if path.is_absolute() else self.base_dir / path


def _resolve_env_refs(value: Any, where: str, environ: Mapping[str, str]) -> Any:
    """Replace ``env:VAR`` strings by the variable's value, failing loudly when it is unset."""
    if isinstance(value, dict):
        return {
            k: _resolve_env_refs(v, f"{where}.{k}" if where else k, environ)
            for k, v in value.items()
        }
    if isinstance(value, str) and value.startswith("env:"):
        var = value[4:]
        if var not in environ:
            raise ConfigError(f"{where}: environment variable {var} is not set")
        return environ[var]
    return value


def _apply_overrides(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name or name == "CHASQUI_CONFIG":
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{name}: {part} is not a section")
        node[path[-1]] = value


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read the config file (default ``$CHASQUI_CONFIG`` or ``./config.toml``) plus overrides."""
    environ = os.environ if environ is None else environ
    explicit = path or environ.get("CHASQUI_CONFIG")
    file = Path(explicit or DEFAULT_CONFIG)
    data: dict[str, Any] = {}
    if file.exists():
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: {exc}") from exc
    elif explicit:  # only the default file may be absent (then the defaults apply)
        raise ConfigError(f"{file}: no such config file")
    _apply_overrides(data, environ)
    data = _resolve_env_refs(data, "", environ)
    data["base_dir"] = file.resolve().parent
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems = summary(exc, unknown="unknown setting", missing=None, plain=False)
        raise ConfigError(f"{file}: {problems}") from exc
