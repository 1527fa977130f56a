"""The WhatsApp Cloud API protocol layer in one import: pure functions and records, no I/O.

- ``inbound``: ``valid_signature``, ``verify_challenge``, ``parse_webhook`` and its records;
- ``outbound``: ``build_send``, ``build_mark_read``, ``parse_send_response``, ``window_open``;
- ``errors``: ``classify_error`` (and for webhooks ``classify_failed_status``);
- ``templates``: ``parse_template``, ``parse_template_page``, ``check_template_params``;
- ``urns``: ``urn_for``, ``send_target``.

See docs/whatsapp.md.
"""

from __future__ import annotations

from channels.protocol import Location
from channels.whatsapp.errors import (
    ErrorClass,
    Kind,
    classify_detail,
    classify_error,
    classify_failed_status,
)
from channels.whatsapp.inbound import normalise_language, parse_webhook
from channels.whatsapp.inbound_records import (
    ErrorDetail,
    InboundMessage,
    Media,
    MessageContext,
    Reaction,
    StatusUpdate,
    TemplateStatusUpdate,
    WebhookBatch,
)
from channels.whatsapp.outbound import (
    OutboundError,
    SendAccepted,
    build_mark_read,
    build_send,
    build_template,
    media_ref,
    parse_send_response,
    window_open,
)
from channels.whatsapp.signature import valid_signature, verify_challenge
from channels.whatsapp.templates import (
    ButtonInfo,
    HeaderInfo,
    Placeholders,
    TemplateInfo,
    TemplatePage,
    TemplateParseError,
    TemplateProblem,
    check_template_params,
    parse_template,
    parse_template_page,
)
from channels.whatsapp.urns import send_target, urn_for

__all__ = [
    "ButtonInfo",
    "ErrorClass",
    "ErrorDetail",
    "HeaderInfo",
    "InboundMessage",
    "Kind",
    "Location",
    "Media",
    "MessageContext",
    "OutboundError",
    "Placeholders",
    "Reaction",
    "SendAccepted",
    "StatusUpdate",
    "TemplateInfo",
    "TemplatePage",
    "TemplateParseError",
    "TemplateProblem",
    "TemplateStatusUpdate",
    "WebhookBatch",
    "build_mark_read",
    "build_send",
    "build_template",
    "check_template_params",
    "classify_detail",
    "classify_error",
    "classify_failed_status",
    "media_ref",
    "normalise_language",
    "parse_send_response",
    "parse_template",
    "parse_template_page",
    "parse_webhook",
    "send_target",
    "urn_for",
    "valid_signature",
    "verify_challenge",
    "window_open",
]
