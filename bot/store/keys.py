"""Every Redis key name Chasqui uses, built here and nowhere else (the Lua scripts get theirs
as arguments, or as ``%s`` patterns made here).

All keys of one contact share the hash tag ``{c:<uuid>}`` so that on Redis Cluster they live on
one slot and each per-contact step is a single-slot script. Global keys (the work streams, the
timer set, the URN index) are few and named below. Layout, with why, in docs/redis.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# -- work: streams, consumer groups, timers ------------------------------------------------------
READY = "chasqui:ready"  # stream: "contact <uuid> has events queued"
SENDQ = "chasqui:sendq"  # stream: "contact <uuid> has messages in its outbox"
TIMERS = "chasqui:timers"  # sorted set: "<contact>|<kind>|<token>" scored by due time
WORKERS = "workers"  # consumer group on READY


def signal_timer(cid: str, token: str) -> str:
    """The timer that signals a contact on READY when it fires (fire_timers.lua): left by a
    claim whose holder might die holding the contact's lock, due when that lock expires."""
    return f"{cid}|signal|{token}"


SENDERS = "senders"  # consumer group on SENDQ

# -- starts --------------------------------------------------------------------------------------
STARTQ = "chasqui:startq"  # stream: "start <uuid> has a chunk to expand" (bot/work/starts.py)
STARTERS = "starters"  # consumer group on STARTQ
STARTS = "chasqui:starts"  # sorted set: start uuids by creation time
STARTS_DUE = "chasqui:starts:due"  # sorted set: start uuids by when their next chunk is due


def start_key(sid: str, part: str = "") -> str:
    """A start's hash (request, status, counts); with ``part``: ``seen`` (set of contacts
    already decided), ``contacts`` (hash contact -> outcome), ``targets`` (set of explicitly
    named contacts), ``lock`` (the process expanding it), ``minutes`` (hash
    ``<bucket start>:<sent|delivered|read|failed>`` -> count: the message outcomes over time)."""
    return f"chasqui:start:{sid}:{part}" if part else f"chasqui:start:{sid}"


def idempotency_key(key: str) -> str:
    return f"chasqui:starts:idem:{key}"


# -- contacts and groups -------------------------------------------------------------------------
CONTACTS = "chasqui:contacts"  # sorted set, all scores 0: "<created_on>|<uuid>", listed by lex
SEARCH = "chasqui:contacts:search"  # sorted set, all scores 0: "<word> <uuid>" (search.py)
SEARCH_BUILT = "chasqui:contacts:search:version"  # the words' version the index was built with
GROUPS = "chasqui:groups"  # hash: group name -> group id
GROUP_SEQ = "chasqui:groups:seq"  # counter: the next group id


def group_key(gid: str) -> str:
    """A group's hash: name, created_on."""
    return f"chasqui:group:{gid}"


def members_key(gid: str) -> str:
    """The set of the uuids of a group's members."""
    return f"chasqui:group:{gid}:members"


# The per-contact keys (besides the lock and one ``run:<uuid>`` per ended run).
CONTACT_PARTS = (
    "contact",
    "session",
    "q",
    "runs",
    "msgs",
    "history",
    "outbox",
    "sendlock",
    "console",  # the console channel's transcript, written by versions before 0.2: deleted too
)


def contact_key(cid: str, part: str) -> str:
    return f"{{c:{cid}}}:{part}"


def urn_key(urn: str) -> str:
    return f"chasqui:urn:{urn}"


QUEUE_PATTERN = contact_key("%s", "q")

# -- runs and flow counters ----------------------------------------------------------------------
RUN_FLOWS = "chasqui:runs:flows"  # set: the ids of the flows that have runs indexed
OPEN = "open"  # the run index state of runs that have not ended (active or waiting)


def flow_runs_key(flow: str, state: str) -> str:
    """A flow's runs in one state (``open``, or how they ended): sorted set, all scores 0,
    members from :func:`run_member`; kept in step by the commit."""
    return f"chasqui:flow:{flow}:runs:{state}"


def flow_stats_key(flow: str) -> str:
    """A flow's counters (hash; the fields are named in bot/core/counters.py)."""
    return f"chasqui:flow:{flow}:stats"


def created_prefix(value: Any) -> str:
    """A creation time as a fixed-width, lex-sortable prefix of an index member."""
    try:
        created = max(float(value or 0), 0.0)
    except (TypeError, ValueError):
        created = 0.0
    return f"{created:017.3f}"


def run_member(cid: str, run: Mapping[str, Any]) -> str:
    """A run's entry in its flow's index: creation time (as in CONTACTS), contact, run -- lex
    order is creation order, and the entry says where the run is kept."""
    return f"{created_prefix(run.get('created_on'))}|{cid}|{run['uuid']}"


def index_member(contact: dict[str, Any]) -> str:
    """A contact's entry in CONTACTS: fixed-width creation time then uuid, so lex order is
    creation order and a member is a stable paging cursor."""
    return f"{created_prefix(contact.get('created_on'))}|{contact['uuid']}"


# -- sending, statuses, channels -----------------------------------------------------------------
def ext_key(channel: str, external_id: str) -> str:
    """A provider's message id (e.g. a wamid) -> "<contact uuid> <message uuid>"."""
    return f"chasqui:ext:{channel}:{external_id}"


def templates_key(channel: str) -> str:
    return f"chasqui:templates:{channel}"


def rate_key(bucket: str) -> str:
    """A rate limiter's bucket (e.g. one sending number)."""
    return f"chasqui:rate:{bucket}"


def seen_key(key: str) -> str:
    """A dedup mark: "this webhook / message was seen" (expires)."""
    return f"chasqui:seen:{key}"


# the start's hash, its per-contact outcomes, its outcome buckets (%s = start uuid): the scripts
# that move a start's message counters take these three, in this order
START_PATTERNS = (start_key("%s"), start_key("%s", "contacts"), start_key("%s", "minutes"))


# -- Studio --------------------------------------------------------------------------------------
def session_key(sid: str) -> str:
    """A Studio sign-in (hash: user, role, csrf, flash), expiring when idle (docs/studio.md)."""
    return f"chasqui:session:{sid}"
