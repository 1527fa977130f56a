"""``call_webhook``: an HTTP call; its answer is ``@webhook``; 2xx -> ``next``, else ``on_failure``.

The node only *asks* for the call: the worker makes it outside the state machine (no I/O in
transitions) and feeds the response back through :meth:`CallWebhook.on_response`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from bot.core.durations import Duration, parse_duration
from bot.flow.nodes.base import FAILURE, NEXT, NodeBody

if TYPE_CHECKING:
    from bot.flow.context import RunContext
    from bot.flow.nodes.base import Node


class CallWebhook(NodeBody):
    KIND = "call_webhook"
    CAN_FAIL = True

    url: str
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None
    timeout: Duration = "10s"
    result: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")

    @field_validator("timeout")
    @classmethod
    def _at_most_30s(cls, value: str) -> str:
        if parse_duration(value) > 30:
            raise ValueError("a webhook timeout longer than 30s would hold the contact too long")
        return value

    def texts(self) -> Iterator[tuple[str, str]]:
        yield "url", self.url
        for key, value in self.headers.items():
            yield f"headers.{key}", value
        if self.body:
            yield "body", self.body

    def enter(self, node: Node, ctx: RunContext) -> str | None:
        ctx.request_webhook(
            {
                "method": self.method,
                "url": ctx.render(self.url).strip(),
                "headers": {k: ctx.render(v) for k, v in self.headers.items()},
                "body": ctx.render(self.body) if self.body else None,
                "timeout": parse_duration(self.timeout),
            }
        )
        return None

    def on_response(self, node: Node, ctx: RunContext, response: dict[str, Any]) -> str:
        ok = 200 <= int(response.get("status", 0)) < 300
        if self.result:
            category = "Success" if ok else "Failure"
            ctx.save_result(self.result, str(response.get("status", "")), category, node.id)
        return NEXT if ok else FAILURE
