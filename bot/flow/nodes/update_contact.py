"""``update_contact``: the channel the contact is reached on, name, language, fields, status."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from bot.flow.nodes.base import NEXT, NodeBody

if TYPE_CHECKING:
    from bot.flow.context import RunContext
    from bot.flow.nodes.base import Node


class UpdateContact(NodeBody):
    KIND = "update_contact"

    channel: str | None = None  # a channel name from config.toml, checked at load
    name: str | None = None
    language: str | None = None
    fields: dict[str, str] = Field(default_factory=dict)
    status: Literal["active", "opted_out", "blocked"] | None = None

    @model_validator(mode="after")
    def _changes_something(self) -> UpdateContact:
        if not (self.channel or self.name or self.language or self.fields or self.status):
            raise ValueError("needs at least one of channel, name, language, fields, status")
        return self

    def texts(self) -> Iterator[tuple[str, str]]:
        if self.name:
            yield "name", self.name
        if self.language:
            yield "language", self.language
        for key, value in self.fields.items():
            yield f"fields.{key}", value

    def enter(self, node: Node, ctx: RunContext) -> str | None:
        contact = ctx.contact
        if self.channel:
            contact["channel"] = self.channel
        if self.name is not None:
            contact["name"] = ctx.render(self.name).strip()
        if self.language is not None:
            contact["language"] = ctx.render(self.language).strip()
        ctx.contact_changed()  # later fields may refer to the new name or language
        if self.fields:
            fields = contact.setdefault("fields", {})
            for key, value in self.fields.items():
                fields[key] = ctx.render(value)
        if self.status:
            contact["status"] = self.status
        ctx.contact_changed()
        return NEXT
