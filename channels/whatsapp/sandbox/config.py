"""Configuration of the WhatsApp sandbox: the numbers it plays, its secrets, its pace."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SandboxNumber:
    """One business phone number the sandbox plays, and where its webhooks go."""

    phone_number_id: str
    display_phone_number: str
    webhook_url: str  # Chasqui's POST /webhooks/whatsapp/<channel>


@dataclass
class SandboxConfig:
    app_secret: str
    verify_token: str
    access_tokens: set[str]
    waba_id: str
    numbers: list[SandboxNumber]
    # ``Authorization: Bearer <admin_token>`` on every /_fake control (never empty: the app refuses
    # to build without one). Mounted in ``chasqui serve`` it is the server's admin token.
    admin_token: str = ""
    templates: list[dict[str, Any]] | None = None  # seed; None -> the demo set
    # Seconds after an accepted send at which its sent, delivered and read statuses are emitted.
    status_delays: tuple[float, float, float] = (0.05, 0.2, 0.5)
    max_mps: float = 80.0  # throughput bucket per phone number; 0 disables it
    pair_rate: bool = True  # the 1-per-6 s, burst-45 bucket per (number, recipient)
    window_mode: str = "async"  # "async": 200 then a failed 131047; "sync": 400 131047
    clock: Callable[[], float] = time.time
    # Beyond the brief's interface, all with defaults:
    review_delay: float = 1.0  # seconds from template creation to APPROVED/REJECTED
    # Waits between redeliveries of a webhook Chasqui did not answer 200 (the last one repeats)
    # and how long to keep trying: Meta retries for up to 7 days.
    retry_delays: tuple[float, ...] = (1.0, 5.0, 30.0, 120.0, 600.0, 3600.0)
    retry_horizon: float = 7 * 24 * 3600.0
    webhook_timeout: float = 10.0  # seconds per delivery attempt
    webhook_concurrency: int = 64  # deliveries in flight at once
    max_batch: int = 100  # statuses due together go in one POST, up to this many
    record_limit: int = 10_000  # sends and webhooks kept for GET /_fake/sent and /_fake/webhooks
    statuses: bool = True  # False: no status webhooks at all (send-only benchmarks)
    extra: dict[str, Any] = field(default_factory=dict)  # free-form, ignored by the sandbox

    def number(self, phone_number_id: str) -> SandboxNumber | None:
        for number in self.numbers:
            if number.phone_number_id == phone_number_id:
                return number
        return None


# The example identities of the protocol reference (all invented).
DEMO_WABA_ID = "230918475512034"
DEMO_PHONE_NUMBER_ID = "318207746650091"
DEMO_DISPLAY_NUMBER = "15550142200"
DEMO_APP_SECRET = "chasqui_test_app_secret"
DEMO_VERIFY_TOKEN = "chasqui-verify-7f3a"
DEMO_ACCESS_TOKEN = "sandbox-token"


def demo_config(webhook_url: str, **overrides: Any) -> SandboxConfig:
    """The demo sandbox: one number, the reference's identities, the demo templates."""
    values: dict[str, Any] = {
        "app_secret": DEMO_APP_SECRET,
        "verify_token": DEMO_VERIFY_TOKEN,
        "access_tokens": {DEMO_ACCESS_TOKEN},
        "waba_id": DEMO_WABA_ID,
        "numbers": [SandboxNumber(DEMO_PHONE_NUMBER_ID, DEMO_DISPLAY_NUMBER, webhook_url)],
    }
    values.update(overrides)
    return SandboxConfig(**values)
