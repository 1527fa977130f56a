"""Every Redis key and Lua script, the embedded Valkey, connections and paging.

Nothing outside this package names a key or calls Redis directly. May import ``bot.core`` only:
the store knows no flow semantics and no channel.

Others import :class:`Store` (and the records it takes and gives: :class:`Claim`,
:class:`Commit`, :class:`Inbound`, :class:`SendOutcome`, :class:`ContactBusy`) from here; key
names, for the few tests and benches that look at Redis itself, from :mod:`bot.store.keys`.

The modules, one concern each: ``keys`` (every key name), ``base`` (connection, the Lua
loader), ``groups``, ``contacts`` (records, URNs, compare-and-set writes, deletion), ``work``
(queues, claim/commit, timers), ``outbox`` (sending, statuses, rate, templates, console),
``runs`` (runs, run indexes, flow counters, history), ``starts`` (start records, the
starts stream, deciding each contact once per start), ``sessions`` (Studio's sign-ins).

Why one ``Store`` made of mixins rather than a store holding parts (``store.contacts.get``):
callers keep one object and flat method names (``store.enqueue``, ``store.claim``), so the
worker, the API and the channels need not know how the store is cut; the parts share one
connection and one script cache through :class:`~bot.store.base.StoreBase`, and a part that
needs another says so by subclassing it (``ContactStore(GroupStore)``), which mypy checks.
"""

from __future__ import annotations

from bot.store.base import dumps
from bot.store.contacts import ContactBusy, ContactStore
from bot.store.outbox import OutboxStore, SendOutcome
from bot.store.runs import RunStore
from bot.store.sessions import SessionStore
from bot.store.starts import StartStore
from bot.store.work import Claim, Commit, Inbound, WorkStore

__all__ = ["Claim", "Commit", "ContactBusy", "Inbound", "SendOutcome", "Store", "dumps"]


class Store(ContactStore, WorkStore, OutboxStore, RunStore, StartStore, SessionStore):
    """The data layer: one Redis connection, every operation Chasqui does on it."""
