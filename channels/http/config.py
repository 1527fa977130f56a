"""The ``[channels.<name>]`` settings of a signed HTTP channel."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from channels.http.signing import secret_key
from channels.protocol import BlockedAddress, Duration, check_literal


class HttpConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["http"] = "http"
    send_url: str  # where replies are POSTed
    secret: SecretStr  # whsec_<base64>: signs both ways; never logged
    # send_url may be a loopback, private or link-local address (a receiver on this machine or
    # this network); off by default, as for call_webhook (engine.webhook_allow_private)
    allow_private: bool = False
    request_timeout: Duration = "10s"
    retry_delay: Duration = "2s"  # the first retry's delay; doubles per attempt
    concurrency: int = Field(32, ge=1)  # posts in flight to send_url

    @field_validator("send_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("an http(s) URL with a host, e.g. https://example.com/chasqui")
        return value

    @field_validator("secret")
    @classmethod
    def _whsec(cls, value: SecretStr) -> SecretStr:
        secret_key(value.get_secret_value())  # the message never quotes the secret
        return value

    @model_validator(mode="after")
    def _public_unless_allowed(self) -> HttpConfig:
        host = urlsplit(self.send_url).hostname or ""
        if not self.allow_private:
            try:
                check_literal(host)
            except BlockedAddress:
                raise ValueError(
                    f"send_url: {host} is a loopback/private address; set allow_private = true "
                    "if the receiver really is on this machine or network"
                ) from None
        return self

    @property
    def key(self) -> bytes:
        return secret_key(self.secret.get_secret_value())
