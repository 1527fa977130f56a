"""The admin API's request and response bodies, as pydantic models.

Requests are strict (``name: 0`` or ``fields: []`` is a 400, never coerced) and closed (an
unknown key is a 400). Responses are open: they list what every answer has, and an answer may
carry more. The OpenAPI document (:mod:`bot.api.openapi`) is generated from these models, so
what is written here is what the document says.

Query strings are models too, lax (every value arrives as text), and also closed.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from bot.core.contacts import STATUSES, name_problem
from bot.core.runstatus import ENDED, LIVE
from bot.store.paging import MAX_PAGE
from bot.work.starts import SKIP_REASONS
from bot.work.starts import STATUSES as START_STATUSES

ContactStatus = Literal["active", "opted_out", "blocked"]
assert set(ContactStatus.__args__) == set(STATUSES)  # type: ignore[attr-defined]
RunStatus = Literal["active", "waiting", "completed", "interrupted", "expired", "failed"]
assert set(RunStatus.__args__) == {*LIVE, *ENDED}  # type: ignore[attr-defined]
StartStatus = Literal["pending", "starting", "completed", "cancelled", "failed"]
assert set(StartStatus.__args__) == set(START_STATUSES)  # type: ignore[attr-defined]

FIELD_KEY = r"^[a-z][a-z0-9_]{0,63}$"
LANGUAGE = r"^([a-z]{2,3}([_-][A-Za-z0-9]{2,8})?)?$"  # empty: none
FieldKey = Annotated[str, StringConstraints(pattern=FIELD_KEY)]
GroupName = Field(min_length=1, max_length=64, pattern=r"^\S(.*\S)?$")


def _no_control(value: str) -> str:
    problem = name_problem(value)
    if problem:
        raise ValueError(problem)
    return value


Name = Annotated[str, AfterValidator(_no_control)]  # a contact's or group's name
MAX_TARGETS = 10_000  # contacts + URNs named in one request (groups are unbounded)


class Body(BaseModel):
    """A request body: strict types, no unknown keys."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Query(BaseModel):
    """A query string: values arrive as text and are converted; no unknown parameters."""

    model_config = ConfigDict(extra="forbid")


class Answer(BaseModel):
    """A response body: what every answer has; it may carry more."""

    model_config = ConfigDict(extra="allow")


class Page(Query):
    limit: int = Field(50, ge=1, le=MAX_PAGE, description="At most this many items.")
    cursor: str | None = Field(
        None, description="The `next` of the previous page; absent for the first page."
    )


Next = Field(description="The cursor of the next page; null on the last page.")


# -- errors -------------------------------------------------------------------------------------
class ErrorDetail(BaseModel):
    code: str = Field(description="Stable, machine-readable.")
    message: str = Field(description="For the person reading it.")
    details: dict[str, Any] | None = None


class Error(BaseModel):
    """Every 4xx and 5xx answer of the API."""

    error: ErrorDetail


# -- health and flows ---------------------------------------------------------------------------
class Health(Answer):
    status: Literal["ok", "unhealthy"]
    flows: int
    redis: str = Field(description="`ok`, or `down: <reason>`.")
    channels: dict[str, dict[str, Any]] | None = None


class FlowSummary(Answer):
    id: str
    name: str
    language: str
    version: str
    nodes: int
    expire_after: str | int | None = None


class FlowList(Answer):
    flows: list[FlowSummary]


class TemplateProblem(Answer):
    flow: str | None = Field(None, description="The flow's id (in a reload's report).")
    node: str
    channel: str
    code: str = Field(description="The channel's code, e.g. `template_not_found`.")
    message: str


class ReloadReport(Answer):
    loaded: list[str]
    unchanged: list[str]
    kept: list[str] = Field(description="Flows whose new file is invalid: the old one runs on.")
    removed: list[str]
    problems: list[str]
    template_problems: list[TemplateProblem] = Field(
        description="Templates of the loaded flows that the synced templates refuse (the flows "
        "load; a start opening with one is refused)."
    )


class FlowProblem(Answer):
    file: str
    line: int | None
    node: str | None = Field(description="`nodes[3] (ask)`, when the problem is in a node.")
    field: str | None = Field(description="`wait_for_reply.cases[0].next`, when known.")
    message: str
    text: str = Field(description="The whole line as `chasqui check` prints it.")


class FlowFileCheck(Answer):
    id: str
    valid: bool = Field(description="The file exists and has no problem.")
    live_version: str | None = Field(description="The version running (null: not loaded).")
    file_version: str | None = Field(description="The file's version now (null: file gone).")
    changed: bool = Field(description="The file differs from the version running.")
    problems: list[FlowProblem] = Field(description="The file's, then its templates'.")
    warnings: list[str]


class FlowCheckList(Answer):
    flows: list[FlowFileCheck]


class FlowStats(Answer):
    flow: str
    runs: dict[str, int]
    nodes: list[dict[str, Any]]
    results: dict[str, dict[str, int]]
    triggers: dict[str, int] = Field(
        default_factory=dict,
        description="Runs a contact's message started (of runs.started), by kind of trigger: "
        "keyword, catch_all, new_contact.",
    )


# -- contacts -----------------------------------------------------------------------------------
class Contact(Answer):
    uuid: str
    name: str
    urns: list[str]
    fields: dict[str, str]
    groups: list[str] = Field(description="The names of the contact's groups.")
    status: ContactStatus
    language: str | None = None
    created_on: float


class ContactPage(Answer):
    contacts: list[Contact]
    next: str | None = Next


FieldValue = str | int | float
MAX_URNS = 10


class ContactCreate(Body):
    urns: list[str] | None = Field(
        None,
        min_length=1,
        max_length=MAX_URNS,
        description="The contact's URNs, one per scheme (each channel type reaches it at one).",
    )
    urn: str | None = Field(None, description="Shorthand for `urns: [urn]`.")
    name: Name = ""
    language: str | None = Field(None, pattern=LANGUAGE)
    fields: dict[FieldKey, FieldValue] = {}
    groups: list[str] = Field([], description="Group uuids or names; a missing name is created.")
    status: ContactStatus = "active"

    @model_validator(mode="after")
    def _one_urn_at_least(self) -> ContactCreate:
        if (self.urns is None) == (self.urn is None):
            raise ValueError("give urns (a list) or urn, one of the two")
        return self

    def all_urns(self) -> list[str]:
        return self.urns if self.urns is not None else [str(self.urn)]


class ContactUpdate(Body):
    """Only the keys given change."""

    urns: list[str] | None = Field(
        None,
        min_length=1,
        max_length=MAX_URNS,
        description="Replaces the contact's URNs (one per scheme); 409 urn_in_use when one is "
        "another contact's.",
    )
    name: Name = ""
    language: str | None = Field(None, pattern=LANGUAGE, description="null or empty: none.")
    status: ContactStatus = "active"
    fields: dict[FieldKey, FieldValue | None] = Field(
        {}, description="Merged into the contact's fields; null removes a field."
    )


class ContactQuery(Page):
    urn: str | None = Field(None, description="The contact with this URN (a page of 0 or 1).")
    group: str | None = Field(None, description="Members of this group (uuid or name).")
    status: ContactStatus | None = None
    name: str | None = Field(None, description="Name starts with this (case-insensitive).")
    created_since: float | None = Field(None, description="Unix seconds.")
    q: str | None = Field(
        None,
        max_length=200,
        description="Search: every word is the beginning of a word of the name, of a field's "
        "value or of a URN (a phone number's digits), case and accents aside. Read from the "
        "search index (no contact is scanned); the page is in word order.",
    )
    in_flow: bool | None = Field(
        None,
        description="true: only contacts in a flow now (a run active or waiting); false: "
        "only those in none.",
    )


class Deleted(Answer):
    deleted: str = Field(description="The uuid of what was deleted.")


class ImportReport(Answer):
    rows: int
    created: int
    updated: int
    failed: int
    errors: list[dict[str, Any]]
    errors_truncated: bool


class Run(Answer):
    uuid: str
    flow: str
    status: RunStatus
    created_on: float


class RunList(Answer):
    runs: list[Run]


class RunPage(Answer):
    runs: list[Run]
    next: str | None = Next


class RunQuery(Page):
    flow: str | None = None
    status: RunStatus | None = None


class MessageList(Answer):
    messages: list[dict[str, Any]]


class HistoryItem(Answer):
    type: str = Field(description="run_started, run_<status>, message_in, message_out, ...")
    at: float


class History(Answer):
    contact: str
    history: list[HistoryItem]


# -- groups -------------------------------------------------------------------------------------
class Group(Answer):
    uuid: str
    name: str
    count: int = Field(description="Members.")
    created_on: float


class GroupPage(Answer):
    groups: list[Group]
    next: str | None = Next


class GroupCreate(Body):
    name: Name = GroupName


class GroupRename(Body):
    name: Name = GroupName


class Members(Body):
    contacts: list[str] | None = Field(None, description="Contact uuids.")
    urns: list[str] | None = Field(None, description="URNs; adding creates missing contacts.")

    @model_validator(mode="after")
    def _one_of(self) -> Members:
        if (self.contacts is None) == (self.urns is None):
            raise ValueError("give contacts (uuids) or urns, one of the two")
        if len(self.contacts or self.urns or []) > MAX_TARGETS:
            raise ValueError(f"at most {MAX_TARGETS:,} members per request")
        return self


class MemberProblem(Answer):
    code: str
    message: str
    contact: str | None = None
    urn: Any = None


class MembersChanged(Answer):
    group: str = Field(description="The group's uuid.")
    added: int | None = None
    removed: int | None = None
    errors: list[MemberProblem]


# -- starts -------------------------------------------------------------------------------------
class StartCreate(Body):
    flow: str = Field(description="The flow's id.")
    contacts: list[str] = Field([], description="Contact uuids.")
    groups: list[str] = Field([], description="Group uuids or names.")
    urns: list[str] = Field([], description="URNs; missing contacts are created.")
    params: dict[str, Any] = Field({}, description="Available to the flow as `@params`.")
    restart_participants: bool = Field(
        True, description="Start contacts that are in a run of this flow (interrupting it)."
    )
    exclude_active: bool = Field(False, description="Skip contacts that are in any run.")
    send_at: str | float | None = Field(
        None, description="ISO datetime or unix seconds: schedule the start."
    )
    spread_over: str | int | None = Field(
        None, description="A duration (`2h`, seconds): spread the sends over it."
    )

    @model_validator(mode="after")
    def _some_target(self) -> StartCreate:
        if not (self.contacts or self.urns or self.groups):
            raise ValueError("name some contacts, urns or groups")
        if len(self.contacts) + len(self.urns) > MAX_TARGETS:
            raise ValueError(f"at most {MAX_TARGETS:,} contacts and urns")
        return self


class FlowStart(Body):
    flow: str = Field(description="The flow's id.")
    params: dict[str, Any] = Field({}, description="Available to the flow as `@params`.")


class StartCounts(Answer):
    targeted: int
    started: int
    skipped: int
    skipped_by_reason: dict[str, int] = Field(description=f"By {', '.join(SKIP_REASONS)}.")
    failed: int
    failed_by_reason: dict[str, int] = {}


class MessageCounts(Answer):
    sent: int
    delivered: int
    read: int
    failed: int
    failed_by_code: dict[str, int]


class RetryReport(Answer):
    contacts: int = Field(description="Failed contacts retried.")
    skipped: int = Field(description="Failed contacts left out.")
    skipped_by_reason: dict[str, int] = Field(
        description="By `started_since`: started since in the same flow by something else, "
        "and that run did not fail."
    )


class Start(Answer):
    uuid: str
    flow: str
    status: StartStatus
    params: dict[str, Any]
    groups: list[str]
    restart_participants: bool
    exclude_active: bool
    created_on: float
    counts: StartCounts
    messages: MessageCounts
    sending: int = Field(
        0, description="Started contacts whose first message has no outcome yet (sent or failed)."
    )
    retry_of: str | None = Field(None, description="The start this one retries.")
    by: str | None = Field(None, description="The Studio user who made it (absent: the API).")
    retry: RetryReport | None = Field(None, description="A retry: what it retried and skipped.")
    kind: Literal["start", "trigger"] = Field(
        "start",
        description="start: asked for (API, CLI, Studio); trigger: the runs contacts' messages "
        "started in this flow on one UTC day (docs/triggers.md).",
    )
    day: str | None = Field(None, description="A trigger record's UTC day, YYYY-MM-DD.")
    runs: int | None = Field(
        None, description="A trigger record's runs (a contact may write a keyword twice a day)."
    )


class StartPage(Answer):
    starts: list[Start]
    next: str | None = Next


class StartQuery(Page):
    flow: str | None = None
    status: StartStatus | None = None


class Preview(Answer):
    flow: str
    counts: StartCounts
    template: dict[str, Any] | None = Field(description="The template that opens the flow.")
    template_problems: list[TemplateProblem] = Field(
        description="The flow's templates that the synced templates refuse."
    )


class Outcome(Answer):
    contact: str
    status: Literal["started", "skipped", "failed"]
    reason: str | None = Field(None, description="Why skipped or failed: a stable code.")
    message: str | None = Field(
        None, description="A failure in words, e.g. `body parameter 2 is empty`."
    )


class OutcomePage(Answer):
    contacts: list[Outcome]
    next: str | None = Next


class OutcomeQuery(Query):
    status: Literal["started", "skipped", "failed"] | None = None
    limit: int = Field(500, ge=1, le=5000)
    cursor: str | None = None


# -- templates ----------------------------------------------------------------------------------
class Template(Answer):
    channel: str
    name: str
    language: str
    status: str


class TemplatePage(Answer):
    templates: list[Template]
    next: str | None = Next


class TemplateQuery(Page):
    channel: str | None = None
    status: str | None = Field(None, description="APPROVED, PENDING, REJECTED, ...")
    language: str | None = None
    name: str | None = None


class Synced(Answer):
    synced: dict[str, dict[str, Any]] = Field(
        description="Per channel: `{templates: n}`, or `{error: message}`."
    )
