"""The ``[channels.<name>]`` settings of a Telegram bot."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from channels.protocol import Duration

TELEGRAM_API_URL = "https://api.telegram.org"
# what BotFather hands out: the bot's numeric id, a colon, then the secret part
_BOT_TOKEN = re.compile(r"[0-9]{1,20}:[A-Za-z0-9_-]{1,100}")
# what setWebhook accepts as secret_token (Telegram sends it back in a header)
_SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")


class TelegramConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["telegram"] = "telegram"
    bot_token: SecretStr
    secret_token: SecretStr
    api_url: str = TELEGRAM_API_URL  # tests point it at a local stand-in
    max_mps: float = Field(30.0, ge=0)  # sends per second for the whole bot (0: no limit)
    chat_mps: float = Field(1.0, ge=0)  # sends per second to one chat (0: no limit)
    chat_burst: float = Field(3.0, ge=1)  # messages that may go to one chat at once
    concurrency: int = Field(32, ge=1)  # requests in flight to the Bot API
    request_timeout: Duration = "15s"

    # The values are secrets: a refusal says what is wrong, never what was given.
    @field_validator("bot_token")
    @classmethod
    def _token_shape(cls, value: SecretStr) -> SecretStr:
        if not _BOT_TOKEN.fullmatch(value.get_secret_value()):
            raise ValueError("not a bot token: BotFather's <bot id>:<secret>, e.g. 123456:ABC-def")
        return value

    @field_validator("secret_token")
    @classmethod
    def _secret_shape(cls, value: SecretStr) -> SecretStr:
        if not _SECRET_TOKEN.fullmatch(value.get_secret_value()):
            raise ValueError("1 to 256 characters of A-Z, a-z, 0-9, _ and -")
        return value

    @field_validator("api_url")
    @classmethod
    def _url_shape(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("an http(s) URL, e.g. https://api.telegram.org")
        return value.rstrip("/")

    @property
    def bot_id(self) -> str:
        """The bot's own user id: the token's public part (its rate bucket, its logs)."""
        return self.bot_token.get_secret_value().split(":", 1)[0]
