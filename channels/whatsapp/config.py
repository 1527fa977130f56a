"""The ``[channels.<name>]`` settings of a WhatsApp Cloud API number."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from channels.protocol import Duration

SANDBOX = "sandbox"
META_GRAPH_URL = "https://graph.facebook.com"


class WhatsAppConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["whatsapp"] = "whatsapp"
    phone_number_id: str = Field(min_length=1)
    waba_id: str = Field(min_length=1)
    access_token: SecretStr
    app_secret: SecretStr = SecretStr("")
    verify_token: SecretStr = SecretStr("")
    display_phone_number: str = ""  # only used by the sandbox
    graph_url: str = META_GRAPH_URL  # "sandbox": run the built-in stand-in of the Graph API
    api_version: str = Field("v24.0", pattern=r"^v\d+\.\d+$")
    max_mps: float = Field(80.0, ge=0)  # sends per second for this number (0: no limit)
    concurrency: int = Field(64, ge=1)  # requests in flight to the Graph API
    request_timeout: Duration = "15s"
    template_sync: Duration = "1h"  # how often templates are read again from Meta
    list_button: str = "Options"  # the label of the button that opens a list of choices
    mark_read: bool = False  # mark each inbound message read (blue ticks) once it is queued

    @model_validator(mode="after")
    def _secret_outside_the_sandbox(self) -> WhatsAppConfig:
        if not self.sandbox and not self.app_secret.get_secret_value():
            raise ValueError(
                "app_secret is required: without it webhook signatures cannot be checked"
            )
        return self

    @property
    def sandbox(self) -> bool:
        return self.graph_url == SANDBOX
