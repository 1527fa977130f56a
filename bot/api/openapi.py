"""The admin API described as an OpenAPI 3.1 document, served at ``GET /api/v1/openapi.json``.

Written by hand next to the handlers (``bot/api/app.py``, ``bot/api/contacts.py``) and kept true by
``tests/test_openapi.py``: every route the app registers is documented and every documented route
exists. Request schemas say what the handlers accept (required keys, types, enums); response
schemas are brief. Every 4xx/5xx answer has the shape of ``bot/core/errors.py``; the codes each
operation can answer are listed in its responses' descriptions.
"""

from __future__ import annotations

import copy
from importlib import metadata
from typing import Any

from aiohttp import web

from bot.api.runs import STATUSES as RUN_STATUSES
from bot.core.contacts import SCHEMES, STATUSES
from bot.core.runstatus import ENDED
from bot.store.paging import MAX_PAGE
from bot.work.starts import SKIP_REASONS
from bot.work.starts import STATUSES as START_STATUSES

JSON = "application/json"

# the status each error code is answered with (bot/core/errors.py)
ERROR_STATUS: dict[str, int] = {
    "bad_request": 400,
    "invalid_urn": 400,
    "unauthorized": 401,
    "not_found": 404,
    "unknown_flow": 404,
    "unknown_contact": 404,
    "unknown_group": 404,
    "unknown_start": 404,
    "method_not_allowed": 405,
    "group_exists": 409,
    "contact_busy": 409,
    "start_finished": 409,
    "nothing_to_retry": 409,
    "body_too_large": 413,
    "internal": 500,
    "redis_unavailable": 503,
}

DESCRIPTION = """\
The admin API of Chasqui. Every `/api/v1/` route, this document included, needs \
`Authorization: Bearer <token>` (`server.admin_token`, or the token generated into \
`var/admin-token`): the document is served behind the token like the rest of the API, so that \
an unauthenticated caller learns nothing about the deployment. `/healthz` and the channels' \
webhooks need no token.

Errors are JSON, `{"error": {"code", "message", "details"?}}`, with a stable machine-readable \
code; each operation's error responses list the codes it can answer. Any route can also answer \
`not_found` (404, no such route), `method_not_allowed` (405), `redis_unavailable` (503, the \
data store cannot be reached right now: retry) and `internal` (500, with a reference to the log \
line; never a stack trace)."""


# -- small builders ------------------------------------------------------------------------------
def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {JSON: {"schema": schema}}


def _ok(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": _json(schema)}


def _obj(
    properties: dict[str, Any], required: tuple[str, ...] = (), *, closed: bool = False
) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    if closed:
        schema["additionalProperties"] = False
    return schema


def _array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


def _text(description: str = "", **extra: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", **extra}
    if description:
        schema["description"] = description
    return schema


def _body(schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    body: dict[str, Any] = {"required": True, "content": _json(schema)}
    if description:
        body["description"] = description
    return body


def _path_param(name: str, description: str, **schema: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", **schema},
    }


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


def _errors(*codes: str) -> dict[str, Any]:
    """Error responses, one per status, each listing the codes it stands for."""
    by_status: dict[int, list[str]] = {}
    for code in codes:
        by_status.setdefault(ERROR_STATUS[code], []).append(code)
    return {
        str(status): {
            "description": "Error codes: " + ", ".join(f"`{c}`" for c in found),
            "content": _json(_ref("Error")),
        }
        for status, found in sorted(by_status.items())
    }


def _op(
    operation_id: str,
    summary: str,
    responses: dict[str, Any],
    *,
    errors: tuple[str, ...] = (),
    params: tuple[dict[str, Any], ...] = (),
    body: dict[str, Any] | None = None,
    tag: str,
    public: bool = False,
    description: str = "",
) -> dict[str, Any]:
    """One operation; unless public, it needs the token and can answer 401 ``unauthorized``."""
    if body is not None and "body_too_large" not in errors and JSON in body["content"]:
        errors = ("bad_request", *errors, "body_too_large")  # unreadable JSON, over the limit
    op: dict[str, Any] = {"operationId": operation_id, "summary": summary, "tags": [tag]}
    if description:
        op["description"] = description
    if params:
        op["parameters"] = list(params)
    if body is not None:
        op["requestBody"] = body
    all_errors = errors if public else ("unauthorized", *errors)
    op["responses"] = {**responses, **_errors(*dict.fromkeys(all_errors))}
    if public:
        op["security"] = []
    return op


# -- reused pieces -------------------------------------------------------------------------------
PAGING = (
    _query(
        "limit", "Page size.", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 50}
    ),
    _query("cursor", "The `next` of the previous page."),
)
CONTACT_UUID = _path_param("uuid", "The contact's uuid.", format="uuid")
GROUP_NAME = _path_param("name", "The group's name.")
STATUS = {"type": "string", "enum": list(STATUSES)}
LANGUAGE = _text(
    "A language code like es, pt or pt-BR.", pattern=r"^[a-z]{2,3}([_-][A-Za-z0-9]{2,8})?$"
)
URN = _text(
    f"scheme:path with a scheme of {', '.join(SCHEMES)}; phone numbers are normalised to E.164.",
    examples=["whatsapp:+5511987654321"],
)
FIELD_KEY = r"^[a-z][a-z0-9_]{0,63}$"
FIELD_VALUE = {"type": ["string", "number"]}
GROUP = _text(
    "A group name: 1 to 64 characters, no leading/trailing spaces.", minLength=1, maxLength=64
)
MEMBERS_BODY = _body(
    {
        "anyOf": [  # both given: contacts wins
            _obj({"contacts": _array(_text(format="uuid"))}, ("contacts",)),
            _obj({"urns": _array(_text())}, ("urns",)),
        ]
    },
    "Up to 10,000 contacts by uuid, or URNs (on POST, unknown URNs create contacts).",
)
MEMBER_ERROR = _obj(
    {"contact": _text(), "urn": _text(), "code": _text(), "message": _text()}, ("code", "message")
)

SCHEMAS: dict[str, Any] = {
    "Error": _obj(
        {
            "error": _obj(
                {
                    "code": _text("A stable machine-readable code.", enum=list(ERROR_STATUS)),
                    "message": _text("For people."),
                    "details": {"type": "object", "description": "More, by code."},
                },
                ("code", "message"),
            )
        },
        ("error",),
    ),
    "Contact": _obj(
        {
            "uuid": _text(format="uuid"),
            "name": _text(),
            "language": _text(),
            "urns": _array(_text()),
            "fields": {"type": "object", "additionalProperties": {"type": "string"}},
            "groups": _array(_text()),
            "status": STATUS,
            "created_on": {"type": "number", "description": "unix seconds"},
            "modified_on": {"type": "number"},
            "last_seen_on": {"type": "number"},
            "last_channel": _text(),
            "last_inbound": {"type": "object", "additionalProperties": {"type": "number"}},
        },
        ("uuid", "urns", "status"),
    ),
    "Group": _obj(
        {
            "id": _text(),
            "name": _text(),
            "created_on": {"type": "number"},
            "count": {"type": "integer"},
        },
        ("id", "name"),
    ),
    "Flow": _obj(
        {
            "id": _text(),
            "name": _text(),
            "language": _text(),
            "version": _text(),
            "nodes": {"type": "integer"},
            "expire_after": {"type": "integer", "description": "seconds"},
        },
        ("id", "name", "version"),
    ),
    "Run": _obj(
        {
            "uuid": _text(format="uuid"),
            "flow": _text(),
            "version": _text(),
            "status": _text(),
            "created_on": {"type": "number"},
            "modified_on": {"type": "number"},
            "path": _array({}),
            "results": {"type": "object"},
            "errors": _array({"type": "object"}),
            "params": {"type": "object"},
            "parent": _text(),
            "contact": _text("Its contact (in lists across contacts)."),
        },
        ("uuid", "flow", "status"),
    ),
    "Message": _obj(
        {
            "uuid": _text(),
            "direction": {"type": "string", "enum": ["in", "out"]},
            "contact": _text(),
            "channel": {"type": ["string", "null"]},
            "urn": {"type": ["string", "null"]},
            "text": _text(),
            "run": {"type": ["string", "null"]},
            "status": _text(),
            "error": {"type": "object"},
            "created_on": {"type": "number"},
        },
        ("uuid", "direction", "status"),
    ),
    "Template": _obj(
        {"channel": _text(), "name": _text(), "language": _text(), "status": _text()},
        ("channel", "name", "language"),
    ),
    "Start": _obj(
        {
            "uuid": _text(format="uuid"),
            "flow": _text(),
            "status": {"type": "string", "enum": list(START_STATUSES)},
            "reason": _text("Why it failed."),
            "params": {"type": "object"},
            "groups": _array(_text()),
            "restart_participants": {"type": "boolean"},
            "exclude_active": {"type": "boolean"},
            "created_on": {"type": "number"},
            "started_on": {"type": "number"},
            "completed_on": {"type": "number"},
            "cancelled_on": {"type": "number"},
            "send_at": {"type": "number"},
            "spread_over": {"type": "number", "description": "seconds"},
            "retry_of": _text(format="uuid"),
            "counts": _obj(
                {
                    "targeted": {"type": "integer"},
                    "started": {"type": "integer"},
                    "skipped": {"type": "integer"},
                    "skipped_by_reason": _obj({r: {"type": "integer"} for r in SKIP_REASONS}),
                    "failed": {"type": "integer"},
                }
            ),
            "messages": _obj(
                {
                    "sent": {"type": "integer"},
                    "delivered": {"type": "integer"},
                    "read": {"type": "integer"},
                    "failed": {"type": "integer"},
                    "failed_by_code": {
                        "type": "object",
                        "additionalProperties": {"type": "integer"},
                    },
                }
            ),
        },
        ("uuid", "flow", "status", "counts", "messages"),
    ),
    "ImportReport": _obj(
        {
            "rows": {"type": "integer"},
            "created": {"type": "integer"},
            "updated": {"type": "integer"},
            "failed": {"type": "integer"},
            "errors": _array(
                _obj(
                    {
                        "row": {"type": "integer"},
                        "code": {
                            "type": "string",
                            "enum": ["invalid_urn", "bad_row", "contact_busy", "unknown_contact"],
                        },
                        "message": _text(),
                    },
                    ("row", "code", "message"),
                )
            ),
            "errors_truncated": {"type": "boolean"},
        },
        ("rows", "created", "updated", "failed", "errors", "errors_truncated"),
    ),
}


# -- the paths -----------------------------------------------------------------------------------
def _paths() -> dict[str, Any]:
    contact_fields = {
        "type": "object",
        "propertyNames": {"pattern": FIELD_KEY},
        "additionalProperties": FIELD_VALUE,
    }
    return {
        "/healthz": {
            "get": _op(
                "healthz",
                "Health of Redis and the channels",
                {
                    "200": _ok(
                        "Healthy",
                        _obj(
                            {
                                "status": {"type": "string", "enum": ["ok", "unhealthy"]},
                                "redis": _text("ok, or down: <reason>"),
                                "flows": {"type": "integer"},
                                "channels": {"type": "object"},
                            },
                            ("status", "redis", "flows"),
                        ),
                    ),
                    "503": {"description": "Unhealthy: the same shape, `status: unhealthy`"},
                },
                tag="health",
                public=True,
            )
        },
        "/webhooks/{type}/{name}": {
            method: _op(
                f"channel_webhook_{method}",
                "A channel's webhook (the channel answers; WhatsApp checks Meta's signature)",
                {"200": {"description": "As the channel answers"}},
                errors=("not_found",),
                params=(
                    _path_param("type", "The channel type, e.g. whatsapp."),
                    _path_param("name", "The channel's name in the config."),
                ),
                tag="channels",
                public=True,
            )
            for method in ("get", "post")
        },
        "/api/v1/openapi.json": {
            "get": _op(
                "openapi",
                "This document",
                {"200": _ok("The OpenAPI 3.1 document", {"type": "object"})},
                tag="meta",
            )
        },
        "/api/v1/flows": {
            "get": _op(
                "list_flows",
                "The loaded flows",
                {"200": _ok("The flows", _obj({"flows": _array(_ref("Flow"))}, ("flows",)))},
                tag="flows",
            )
        },
        "/api/v1/flows/reload": {
            "post": _op(
                "reload_flows",
                "Reload the flows folder",
                {
                    "200": _ok(
                        "What changed; `kept`: an invalid new file, the old version still live",
                        _obj(
                            {
                                k: _array(_text())
                                for k in ("loaded", "unchanged", "kept", "removed", "problems")
                            },
                            ("loaded", "unchanged", "kept", "removed", "problems"),
                        ),
                    )
                },
                tag="flows",
            )
        },
        "/api/v1/templates": {
            "get": _op(
                "list_templates",
                "The synced message templates of every channel",
                {
                    "200": _ok(
                        "The templates",
                        _obj({"templates": _array(_ref("Template"))}, ("templates",)),
                    )
                },
                params=(
                    _query("channel", "Only this channel's."),
                    _query("status", "Only with this status (case-insensitive), e.g. APPROVED."),
                    _query("language", "Only this language."),
                    _query("name", "Only this template name."),
                ),
                tag="templates",
            )
        },
        "/api/v1/templates/sync": {
            "post": _op(
                "sync_templates",
                "Read every channel's templates from the provider now",
                {
                    "200": _ok(
                        "Per channel: the count, or the error that channel met",
                        _obj(
                            {
                                "synced": {
                                    "type": "object",
                                    "additionalProperties": _obj(
                                        {"templates": {"type": "integer"}, "error": _text()}
                                    ),
                                }
                            },
                            ("synced",),
                        ),
                    )
                },
                tag="templates",
            )
        },
        "/api/v1/channels/{name}/media/{media_id}": {
            "get": _op(
                "channel_media",
                "An inbound attachment, fetched from the provider on demand",
                {
                    "200": {
                        "description": "The bytes, with the attachment's content type",
                        "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
                    }
                },
                errors=("not_found",),
                params=(
                    _path_param("name", "The channel's name."),
                    _path_param("media_id", "The provider's media id."),
                ),
                tag="channels",
            )
        },
        "/api/v1/contacts": {
            "get": _op(
                "list_contacts",
                "Find one contact by URN, or list a page of contacts",
                {
                    "200": _ok(
                        "With `urn`: the contact. Otherwise a page in creation order; pass "
                        "`next` back as `cursor` until it is null (a page may be short while "
                        "`next` is set: one request looks at most 5,000 contacts)",
                        {
                            "oneOf": [
                                _ref("Contact"),
                                _obj(
                                    {
                                        "contacts": _array(_ref("Contact")),
                                        "next": {"type": ["string", "null"]},
                                    },
                                    ("contacts", "next"),
                                ),
                            ]
                        },
                    )
                },
                errors=("bad_request", "invalid_urn", "unknown_contact", "unknown_group"),
                params=(
                    _query("urn", "Find the contact with this URN (normalised first).", URN),
                    _query("group", "Only members of this group."),
                    _query("status", "Only contacts with this status.", STATUS),
                    _query("name", "Only names starting with this (case-insensitive)."),
                    _query("created_since", "Unix seconds.", {"type": "number"}),
                    *PAGING,
                ),
                tag="contacts",
            ),
            "post": _op(
                "create_contact",
                "Create a contact (idempotent on the URN)",
                {
                    "201": _ok("Created", _ref("Contact")),
                    "200": _ok("The existing contact of that URN, unchanged", _ref("Contact")),
                },
                errors=("invalid_urn",),
                body=_body(
                    _obj(
                        {
                            "urn": URN,
                            "name": _text(),
                            "language": LANGUAGE,
                            "fields": contact_fields,
                            "groups": _array(GROUP),
                            "status": STATUS,
                        },
                        ("urn",),
                        closed=True,
                    )
                ),
                tag="contacts",
            ),
        },
        "/api/v1/contacts/import": {
            "post": _op(
                "import_contacts",
                "Import contacts from a CSV (streamed; not bound by the body limit)",
                {"200": _ok("The report", _ref("ImportReport"))},
                errors=("bad_request",),
                params=(
                    {
                        **_query("group", "Add every row to this group too (repeatable).", GROUP),
                        "explode": True,
                    },
                ),
                body={
                    "required": True,
                    "description": "UTF-8 CSV with a header row: urn (or phone), name, "
                    "language, group(s), field:<key> (docs/contacts.md).",
                    "content": {
                        "text/csv": {"schema": {"type": "string"}},
                        "multipart/form-data": {
                            "schema": _obj({"file": {"type": "string", "format": "binary"}})
                        },
                    },
                },
                tag="contacts",
            )
        },
        "/api/v1/contacts/{uuid}": {
            "parameters": [CONTACT_UUID],
            "get": _op(
                "get_contact",
                "A contact",
                {"200": _ok("The contact", _ref("Contact"))},
                errors=("unknown_contact",),
                tag="contacts",
            ),
            "patch": _op(
                "update_contact",
                "Change a contact: name, language, status replace; fields merge",
                {"200": _ok("The contact", _ref("Contact"))},
                errors=("unknown_contact", "contact_busy"),
                body=_body(
                    _obj(
                        {
                            "name": _text(),
                            "language": {"anyOf": [LANGUAGE, {"const": ""}, {"type": "null"}]},
                            "status": STATUS,
                            "fields": {
                                **contact_fields,
                                "additionalProperties": {"type": ["string", "number", "null"]},
                                "description": "Merged into the contact's; null removes a field.",
                            },
                        },
                        closed=True,
                    )
                ),
                tag="contacts",
            ),
            "delete": _op(
                "delete_contact",
                "Delete a contact and its whole history",
                {"200": _ok("Deleted", _obj({"deleted": _text(format="uuid")}, ("deleted",)))},
                errors=("unknown_contact", "contact_busy"),
                tag="contacts",
            ),
        },
        "/api/v1/contacts/{uuid}/runs": {
            "get": _op(
                "contact_runs",
                "A contact's runs, active first, then ended (newest first)",
                {"200": _ok("The runs", _obj({"runs": _array(_ref("Run"))}, ("runs",)))},
                errors=("unknown_contact",),
                params=(CONTACT_UUID,),
                tag="contacts",
            )
        },
        "/api/v1/contacts/{uuid}/messages": {
            "get": _op(
                "contact_messages",
                "A contact's messages in and out, oldest first",
                {
                    "200": _ok(
                        "The messages", _obj({"messages": _array(_ref("Message"))}, ("messages",))
                    )
                },
                errors=("unknown_contact",),
                params=(CONTACT_UUID,),
                tag="contacts",
            )
        },
        "/api/v1/contacts/{uuid}/history": {
            "get": _op(
                "contact_history",
                "A contact's timeline, oldest first: messages in and out, runs started and how "
                "each ended (completed, interrupted, expired, failed, with the reason), opt-outs",
                {
                    "200": _ok(
                        "The timeline",
                        _obj(
                            {
                                "contact": {"type": "string"},
                                "history": _array(
                                    _obj(
                                        {
                                            "type": {"type": "string"},
                                            "at": {"type": "number"},
                                            "run": {"type": "string"},
                                            "flow": {"type": "string"},
                                            "reason": {"type": "string"},
                                            "message": _ref("Message"),
                                        },
                                        ("type", "at"),
                                    )
                                ),
                            },
                            ("contact", "history"),
                        ),
                    )
                },
                errors=("unknown_contact",),
                params=(CONTACT_UUID,),
                tag="contacts",
            )
        },
        "/api/v1/contacts/{uuid}/start": {
            "post": _op(
                "start_contact",
                "Start (or restart) a contact in a flow, interrupting a run it waits in",
                {
                    "202": _ok(
                        "Queued",
                        _obj(
                            {
                                "queued": {"const": True},
                                "contact": _text(format="uuid"),
                                "flow": _text(),
                            },
                            ("queued", "contact", "flow"),
                        ),
                    )
                },
                errors=("unknown_contact", "unknown_flow"),
                params=(CONTACT_UUID,),
                body=_body(
                    _obj(
                        {"flow": _text("A loaded flow's id."), "params": {"type": "object"}},
                        ("flow",),
                    ),
                    "`unknown_flow` lists the loaded flows in `details.flows`.",
                ),
                tag="contacts",
            )
        },
        **_start_paths(),
        **_run_paths(),
        "/api/v1/groups": {
            "get": _op(
                "list_groups",
                "The groups",
                {"200": _ok("The groups", _obj({"groups": _array(_ref("Group"))}, ("groups",)))},
                tag="groups",
            ),
            "post": _op(
                "create_group",
                "Create a group",
                {"201": _ok("Created", _ref("Group"))},
                errors=("group_exists",),
                body=_body(_obj({"name": GROUP}, ("name",))),
                tag="groups",
            ),
        },
        "/api/v1/groups/{name}": {
            "parameters": [GROUP_NAME],
            "patch": _op(
                "rename_group",
                "Rename a group (its members' `groups` lists follow)",
                {"200": _ok("Renamed", _obj({"id": _text(), "name": _text()}, ("id", "name")))},
                errors=("unknown_group", "group_exists", "contact_busy"),
                body=_body(_obj({"name": GROUP}, ("name",))),
                tag="groups",
            ),
            "delete": _op(
                "delete_group",
                "Delete a group (its members stay, without it)",
                {"200": _ok("Deleted", _obj({"deleted": _text()}, ("deleted",)))},
                errors=("unknown_group", "contact_busy"),
                tag="groups",
            ),
        },
        "/api/v1/groups/{name}/members": {
            "parameters": [GROUP_NAME],
            **{
                method: _op(
                    f"{verb}_members",
                    f"{verb.capitalize()} members in bulk",
                    {
                        "200": _ok(
                            f"How many were {done}, and what was wrong per contact or URN",
                            _obj(
                                {
                                    "group": _text(),
                                    done: {"type": "integer"},
                                    "errors": _array(MEMBER_ERROR),
                                },
                                ("group", done, "errors"),
                            ),
                        )
                    },
                    errors=("unknown_group", "contact_busy"),
                    body=MEMBERS_BODY,
                    tag="groups",
                )
                for method, verb, done in (
                    ("post", "add", "added"),
                    ("delete", "remove", "removed"),
                )
            },
        },
    }


START_UUID = _path_param("uuid", "The start's uuid.", format="uuid")
START_BODY = _body(
    _obj(
        {
            "flow": _text("A loaded flow's id."),
            "contacts": _array(_text(format="uuid")),
            "groups": _array(GROUP),
            "urns": _array(URN),
            "params": {"type": "object", "description": "`@trigger.params` of each run."},
            "restart_participants": {"type": "boolean", "default": True},
            "exclude_active": {"type": "boolean", "default": False},
            "send_at": {
                "type": ["string", "number"],
                "description": "ISO datetime or unix seconds: the start waits until then.",
            },
            "spread_over": {
                "type": ["string", "integer"],
                "description": "A duration (`2h`) or seconds: the starts spread evenly.",
            },
        },
        ("flow",),
        closed=True,
    ),
    "At least one of contacts, groups, urns (up to 10,000 contacts and urns; groups of any "
    "size). New URNs create contacts.",
)
START_ERRORS = ("unknown_flow", "unknown_group", "invalid_urn")


def _start_paths() -> dict[str, Any]:
    one = {"200": _ok("The start", _ref("Start"))}
    return {
        "/api/v1/starts": {
            "get": _op(
                "list_starts",
                "Starts, newest first",
                {"200": _ok("The starts", _obj({"starts": _array(_ref("Start"))}, ("starts",)))},
                errors=("bad_request",),
                params=(
                    _query("flow", "Only starts of this flow."),
                    _query(
                        "status",
                        "Only starts with this status.",
                        {"type": "string", "enum": list(START_STATUSES)},
                    ),
                    _query("limit", "Page size (50).", {"type": "integer", "maximum": 500}),
                    _query(
                        "before", "Only created before this (unix seconds).", {"type": "number"}
                    ),
                ),
                tag="starts",
            ),
            "post": _op(
                "create_start",
                "Start a flow for contacts, URNs and groups (expanded in the background)",
                {
                    "202": _ok("Accepted: the start, pending", _ref("Start")),
                    "200": _ok("The start of this Idempotency-Key, as it is now", _ref("Start")),
                },
                errors=START_ERRORS,
                params=(
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "description": "The same key (within 7 days) answers the same start.",
                        "schema": {"type": "string"},
                    },
                ),
                body=START_BODY,
                tag="starts",
            ),
        },
        "/api/v1/starts/preview": {
            "post": _op(
                "preview_start",
                "How many a start would reach, what each exclusion removes, and the template "
                "the flow opens with; starts nothing",
                {
                    "200": _ok(
                        "The numbers",
                        _obj(
                            {
                                "flow": _text(),
                                "contacts": {"type": "integer"},
                                "targeted": {"type": "integer"},
                                "skipped": {"type": "integer"},
                                "skipped_by_reason": {"type": "object"},
                                "failed": {"type": "integer"},
                                "failed_by_reason": {"type": "object"},
                                "template": {"type": ["object", "null"]},
                            },
                            ("flow", "contacts", "targeted", "skipped_by_reason", "template"),
                        ),
                    )
                },
                errors=START_ERRORS,
                body=START_BODY,
                tag="starts",
            )
        },
        "/api/v1/starts/{uuid}": {
            "get": _op(
                "get_start",
                "A start: status and counts",
                one,
                errors=("unknown_start",),
                params=(START_UUID,),
                tag="starts",
            )
        },
        "/api/v1/starts/{uuid}/contacts": {
            "get": _op(
                "start_contacts",
                "What became of each contact of a start, with the reason",
                {
                    "200": _ok(
                        "A page; pass `next` back as `cursor` until it is null",
                        _obj(
                            {
                                "contacts": _array(
                                    _obj(
                                        {
                                            "contact": _text(format="uuid"),
                                            "status": _text(),
                                            "reason": _text(),
                                        },
                                        ("contact", "status"),
                                    )
                                ),
                                "next": {"type": ["string", "null"]},
                            },
                            ("contacts", "next"),
                        ),
                    )
                },
                errors=("bad_request", "unknown_start"),
                params=(
                    START_UUID,
                    _query(
                        "status",
                        "Only these outcomes.",
                        {"type": "string", "enum": ["started", "skipped", "failed"]},
                    ),
                    _query("cursor", "The `next` of the previous page."),
                    _query("limit", "About this many (500).", {"type": "integer", "maximum": 5000}),
                ),
                tag="starts",
            )
        },
        "/api/v1/starts/{uuid}/cancel": {
            "post": _op(
                "cancel_start",
                "Cancel a start: contacts not queued yet are not started",
                one,
                errors=("unknown_start", "start_finished"),
                params=(START_UUID,),
                tag="starts",
            )
        },
        "/api/v1/starts/{uuid}/retry": {
            "post": _op(
                "retry_start",
                "A new start of the same flow for the contacts that failed",
                {"202": _ok("The new start, pending", _ref("Start"))},
                errors=("unknown_start", "unknown_flow", "nothing_to_retry"),
                params=(START_UUID,),
                tag="starts",
            )
        },
    }


COUNT = {"type": "integer"}
STATS_EXIT = _obj(
    {
        "exit": _text("next, failure, case<N>, other or timeout"),
        "category": _text("The category of a case or of `other`."),
        "to": {"type": ["string", "null"], "description": "The node it leads to; null: the end."},
        "count": COUNT,
    },
    ("exit", "count"),
)
FLOW_STATS = _obj(
    {
        "flow": _text(),
        "version": {"type": ["string", "null"], "description": "null: the file is gone"},
        "runs": _obj(
            {
                "started": COUNT,
                "active": _text("Runs not ended now (active or waiting).", type="integer"),
                "waiting": COUNT,
                **{status: COUNT for status in ENDED},
            },
            ("started", "active", "waiting"),
        ),
        "nodes": _array(
            _obj(
                {
                    "id": _text(),
                    "kind": _text(),
                    "waiting": _text("Contacts waiting here now (waits only).", type="integer"),
                    "exits": _array(STATS_EXIT),
                    "removed": {"type": "boolean"},
                },
                ("id", "exits"),
            )
        ),
        "results": {
            "type": "object",
            "description": "result name -> category -> runs whose latest value has it",
            "additionalProperties": {"type": "object", "additionalProperties": COUNT},
        },
    },
    ("flow", "runs", "nodes", "results"),
)


def _run_paths() -> dict[str, Any]:
    return {
        "/api/v1/runs": {
            "get": _op(
                "list_runs",
                "Runs of every contact, newest first; pass `next` back as `cursor` until it is "
                "null (a page may be short while `next` is set: one request looks at most "
                "5,000 runs)",
                {
                    "200": _ok(
                        "A page of runs, each with its `contact`",
                        _obj(
                            {
                                "runs": _array(_ref("Run")),
                                "next": {"type": ["string", "null"]},
                            },
                            ("runs", "next"),
                        ),
                    )
                },
                errors=("bad_request", "unknown_flow"),
                params=(
                    _query("flow", "Only runs of this flow."),
                    _query(
                        "status",
                        "Only runs with this status now.",
                        {"type": "string", "enum": list(RUN_STATUSES)},
                    ),
                    *PAGING,
                ),
                tag="runs",
            )
        },
        "/api/v1/flows/{id}/stats": {
            "get": _op(
                "flow_stats",
                "A flow now: contacts waiting at each node, counts through each exit, results "
                "by category, run totals",
                {"200": _ok("The flow's stats", FLOW_STATS)},
                errors=("unknown_flow",),
                params=(_path_param("id", "The flow's id (its file name without .yaml)."),),
                tag="flows",
            )
        },
    }


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the admin API (a fresh dict on each call)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Chasqui admin API",
            "version": metadata.version("chasqui"),
            "description": DESCRIPTION,
        },
        "security": [{"bearer": []}],
        "paths": copy.deepcopy(_paths()),  # shared pieces (parameters) become separate
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The admin token (`server.admin_token` or var/admin-token).",
                }
            },
            "schemas": copy.deepcopy(SCHEMAS),
        },
    }


async def serve_openapi(request: web.Request) -> web.Response:
    """``GET /api/v1/openapi.json`` (behind the admin token, like all of /api/v1)."""
    return web.json_response(openapi_document())
