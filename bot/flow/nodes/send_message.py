"""``send_message``: a text (with quick replies, an attachment) and/or a WhatsApp template."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bot.flow.nodes.base import FAILURE, NEXT, NodeBody

if TYPE_CHECKING:
    from bot.flow.context import RunContext
    from bot.flow.nodes.base import Node


class TemplateSpec(BaseModel):
    """A Meta-approved template; parameters are expressions rendered per contact."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1)
    language: str | None = None  # defaults to the flow's language
    header: list[str] = Field(default_factory=list)
    body: list[str] | dict[str, str] = Field(default_factory=list)
    buttons: list[dict[str, str]] = Field(default_factory=list)

    def texts(self) -> Iterator[tuple[str, str]]:
        for i, text in enumerate(self.header):
            yield f"template.header[{i}]", text
        if isinstance(self.body, dict):
            for key, text in self.body.items():
                yield f"template.body.{key}", text
        else:
            for i, text in enumerate(self.body):
                yield f"template.body[{i}]", text
        for i, button in enumerate(self.buttons):
            for key, text in button.items():
                yield f"template.buttons[{i}].{key}", text


class SendMessage(NodeBody):
    KIND = "send_message"
    CAN_FAIL = True

    text: str | None = None
    quick_replies: list[str] = Field(default_factory=list, max_length=10)
    attachment: str | None = None
    template: TemplateSpec | None = None
    preview_url: bool = False  # WhatsApp: show a preview of the first link in the text
    quote_reply: bool = False  # quote the message being answered (WhatsApp: a reply context)

    @model_validator(mode="after")
    def _something_to_send(self) -> SendMessage:
        if not (self.text or self.template or self.attachment):
            raise ValueError("needs a text, a template or an attachment")
        return self

    def texts(self) -> Iterator[tuple[str, str]]:
        if self.text:
            yield "text", self.text
        for i, reply in enumerate(self.quick_replies):
            yield f"quick_replies[{i}]", reply
        if self.attachment:
            yield "attachment", self.attachment
        if self.template:
            yield from self.template.texts()

    def render_template(self, ctx: RunContext, default_language: str) -> dict[str, Any] | None:
        if self.template is None:
            return None
        t = self.template
        body: list[str] | dict[str, str]
        if isinstance(t.body, dict):
            body = {k: ctx.render(v) for k, v in t.body.items()}
        else:
            body = [ctx.render(v) for v in t.body]
        return {
            "name": t.name,
            "language": t.language or default_language,
            "header": [ctx.render(v) for v in t.header],
            "body": body,
            "buttons": [{k: ctx.render(v) for k, v in b.items()} for b in t.buttons],
        }

    def enter(self, node: Node, ctx: RunContext) -> str | None:
        content: dict[str, Any] = {}
        if self.text:
            content["text"] = ctx.render(self.text)
        if self.quick_replies:
            content["quick_replies"] = [ctx.render(q) for q in self.quick_replies]
        if self.attachment:
            content["attachment"] = ctx.render(self.attachment)
        if self.preview_url and self.text:
            content["preview_url"] = True
        if self.quote_reply and ctx.input_external_id:
            content["reply_to"] = ctx.input_external_id
        template = self.render_template(ctx, ctx.flow.language)
        if template:
            content["template"] = template
        error = ctx.send(node.id, content)
        return NEXT if error is None else FAILURE
