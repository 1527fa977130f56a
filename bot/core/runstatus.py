"""The status of a run: one enum, read by the engine, the flow counters, the API and the tests.

A run is ``active`` while the engine moves it and ``waiting`` at a ``wait_for_reply``; it ends
``completed``, ``expired``, ``interrupted`` or ``failed``. The members are ``str``: they are
stored in JSON and compared with stored text as they are.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    ACTIVE = "active"
    WAITING = "waiting"
    COMPLETED = "completed"
    EXPIRED = "expired"
    INTERRUPTED = "interrupted"
    FAILED = "failed"


LIVE = (RunStatus.ACTIVE, RunStatus.WAITING)  # not ended: in the run index's "open" state
ENDED = (RunStatus.COMPLETED, RunStatus.EXPIRED, RunStatus.INTERRUPTED, RunStatus.FAILED)
