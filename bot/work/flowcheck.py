"""Checks of flows against the channels they will run on, beyond the file itself.

- Templates: every ``send_message`` template is checked against the templates synced from the
  provider (exists in that language, approved, parameters fit), as a send would be -- so a typo
  is found in review, not by the first contact. Needs synced templates in Redis: with
  ``redis.url`` set, or with the embedded Valkey's data present; otherwise it is skipped.
- Warnings: a flow meant for WhatsApp whose first message is free text can only reach contacts
  inside their 24-hour window; it should open with a template. A message that needs what a
  configured channel cannot do (a template without a text where there are no templates, an
  attachment where there is no media, more quick replies than its buttons and lists hold)
  is named with that channel: the flow runs on every channel that reaches a contact. A case of
  a wait that matches a stop word takes that answer there, while anywhere else the same
  message opts the contact out: worth knowing when writing the case.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.core.config import Config
from bot.engine.optout import OptOut
from bot.flow import casetests
from bot.flow.files import Flow, Problem
from bot.flow.nodes.base import Node
from bot.work.host import StoreHost
from channels.protocol import Capabilities, Channel, build_channels, channel_class

if TYPE_CHECKING:
    from bot.store import Store


def _template_block(flow: Flow, node: Node) -> dict[str, Any] | None:
    template = getattr(node.body, "template", None)
    if template is None:
        return None
    return {
        "name": template.name,
        "language": template.language or flow.language,
        "header": list(template.header),
        "body": template.body,
        "buttons": [dict(b) for b in template.buttons],
    }


def _first_sends(flow: Flow) -> Iterator[Node]:
    """The send_message nodes a run meets before its first wait."""
    seen: set[str] = set()
    todo = [flow.first]
    while todo:
        node_id = todo.pop()
        if node_id in seen or node_id not in flow.nodes:
            continue
        seen.add(node_id)
        node = flow.nodes[node_id]
        if node.kind == "send_message":
            yield node
            continue
        if not node.body.WAITS:
            todo.extend(t for t in node.exits().values() if t is not None)


def window_warnings(flows: dict[str, Flow], config: Config) -> list[str]:
    templated = {name for name, cfg in config.channels.items() if _templates(cfg.type)}
    if not templated:
        return []
    warnings = []
    for flow in flows.values():
        channels = {getattr(n.body, "channel", None) for n in flow.nodes.values()}
        if not (channels & templated):
            continue
        for node in _first_sends(flow):
            if _template_block(flow, node) is None:
                warnings.append(
                    f"{flow.path}: nodes[{node.index}] ({node.id}): warning: the first message "
                    "is free text: on WhatsApp it only reaches contacts who wrote in the last "
                    "24 hours; open with a template"
                )
    return warnings


def capability_warnings(flows: dict[str, Flow], config: Config) -> list[str]:
    """A warning per message and configured channel that cannot send it as written (its
    ``Capabilities``): the same flow file runs on every channel, so each is asked."""
    channels: list[tuple[str, Capabilities]] = []
    for name, cfg in sorted(config.channels.items()):
        try:
            channels.append((name, channel_class(cfg.type).CAPABILITIES))
        except ValueError:
            continue
    warnings = []
    for flow in flows.values():
        for node in flow.nodes.values():
            if node.kind != "send_message":
                continue
            where = f"{flow.path}: nodes[{node.index}] ({node.id}): warning"
            for name, can in channels:
                for problem in channel_cannot(node, can):
                    warnings.append(f"{where}: on channel {name}: {problem}")
    return warnings


def channel_cannot(node: Node, can: Capabilities) -> Iterator[str]:
    body = node.body
    text, template = getattr(body, "text", None), getattr(body, "template", None)
    attachment = getattr(body, "attachment", None)
    replies = len(getattr(body, "quick_replies", None) or [])
    if template is not None and not can.templates and not (text or attachment):
        yield (
            f"template {template.name} has no text, and this channel has no templates: "
            "nothing can be sent there (give the message a text)"
        )
    if attachment and not can.media:
        yield "this channel sends no media: the attachment is left out"
    if replies and 0 < max(can.buttons, can.list_rows) < replies:
        yield (
            f"{replies} quick replies, but this channel shows at most "
            f"{max(can.buttons, can.list_rows)}: they go as numbered options in the text"
        )


def stop_word_warnings(flows: dict[str, Flow], opt_out: OptOut) -> list[str]:
    """A warning per case of a wait that a stop word (as a whole message) matches."""
    words = sorted({casetests.fold(w) for ws in opt_out.stop_words.values() for w in ws})
    warnings = []
    for flow in flows.values():
        for node in flow.nodes.values():
            cases = getattr(node.body, "cases", None) if node.body.WAITS else None
            for i, case in enumerate(cases or []):
                if case.test == "has_text":
                    continue  # takes any text: a stop word still opts out (docs/contacts.md)
                hits = [w for w in words if casetests.evaluate(case.test, w, case.args)]
                if hits:
                    warnings.append(
                        f"{flow.path}: nodes[{node.index}] ({node.id}): warning: cases[{i}] "
                        f"({case.test}) matches the stop word(s) {', '.join(map(repr, hits))}: "
                        "answered here it goes to this case; anywhere else it opts the "
                        "contact out"
                    )
    return warnings


def _templates(type_name: str) -> bool:
    """Whether channels of this type send provider templates (an unknown type: no)."""
    try:
        return channel_class(type_name).CAPABILITIES.templates
    except ValueError:
        return False


async def template_problems(flows: dict[str, Flow], config: Config) -> list[Problem] | None:
    """Problems of the flows' templates; None when no synced templates can be read."""
    from bot.store import Store
    from bot.store.redisconn import Connector, has_embedded_data

    if not any(_templates(c.type) for c in config.channels.values()):
        return []
    url = config.redis.url.get_secret_value()
    data_dir = config.resolve(config.redis.data_dir)
    if not url and not has_embedded_data(data_dir):
        return None
    async with Connector(url, data_dir) as redis:
        store = Store(redis)
        built = build_channels(config.channels, StoreHost(store)).values()
        channels = [c for c in built if c.capabilities.templates]
        synced = [c for c in channels if await store.templates(c.name)]
        for channel in synced:
            await channel.load_templates()
        if not synced:
            return None
        return [
            template_problem(flow, node, found)
            for flow in flows.values()
            for node, found in flow_template_problems(flow, synced)
        ]


@dataclass(frozen=True)
class TemplateTrouble:
    """Why a template block cannot be sent on a channel: the channel's code and words."""

    channel: str
    code: str
    message: str


def template_problem(flow: Flow, node: Node, found: TemplateTrouble) -> Problem:
    """A template's trouble as ``chasqui check`` says it: file, line, node, field, why."""
    return Problem(
        str(flow.path),
        node.line,
        f"{found.channel}: {found.code}: {found.message}",
        f"nodes[{node.index}] ({node.id})",
        "send_message.template",
    )


def flow_template_problems(
    flow: Flow, channels: Iterable[Channel]
) -> list[tuple[Node, TemplateTrouble]]:
    """Each template of the flow that one of ``channels`` (with its synced templates loaded)
    would refuse, and why; the same check a send makes."""
    found = []
    for node in flow.nodes.values():
        block = _template_block(flow, node)
        for channel in channels if block is not None else ():
            why = channel.template_problems(block)  # type: ignore[arg-type]
            if why:
                code, _, message = why.partition(": ")
                found.append((node, TemplateTrouble(channel.name, code, message or code)))
    return found


async def synced_channels(store: Store, channels: Iterable[Channel]) -> list[Channel]:
    """The channels that send provider templates and have some synced (a channel with none
    synced yet is not judged: the check would refuse every template)."""
    return [c for c in channels if c.capabilities.templates and await store.has_templates(c.name)]
