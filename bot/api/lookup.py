"""Lookups several resources share, each answering the API's error when what a request names
is not there: a contact, a group (by uuid or name), a URN; and the 409 of a busy contact."""

from __future__ import annotations

from typing import Any

from bot.core.contacts import UrnError, new_record, normalize_urn
from bot.core.errors import ApiError
from bot.store import ContactBusy, Store


def valid_urn(value: str) -> str:
    """The URN normalised, or 400 ``invalid_urn``."""
    try:
        return normalize_urn(value)
    except UrnError as exc:
        raise ApiError(400, "invalid_urn", str(exc)) from None


async def contact_or_404(store: Store, cid: str) -> dict[str, Any]:
    contact = await store.get_contact(cid)
    if contact is None:
        raise ApiError(404, "unknown_contact", f"no contact {cid}")
    return contact


async def group_or_404(store: Store, ref: str) -> dict[str, Any]:
    """The group a path or body names, by uuid or by name: uuid, id, name."""
    group = await store.group_by_ref(ref)
    if group is None:
        raise ApiError(404, "unknown_group", f"no group {ref!r}")
    return group


async def groups_or_404(store: Store, refs: list[str]) -> list[dict[str, Any]]:
    """Each group named (uuid or name), once; 404 ``unknown_group`` naming the first missing."""
    found: dict[str, dict[str, Any]] = {}
    for ref in dict.fromkeys(refs):
        group = await group_or_404(store, ref)
        found.setdefault(group["uuid"], group)
    return list(found.values())


def busy(exc: ContactBusy) -> ApiError:
    return ApiError(
        409,
        "contact_busy",
        "the contact is being processed right now; try again in a moment",
        {"contacts": exc.cids[:20]},
    )


async def contacts_for_urns(
    store: Store, urns: list[str], now: float, *, create: bool
) -> list[str | None]:
    """The contact uuid of each URN (None where there is none), creating the missing ones
    when ``create`` is set."""
    found = await store.contact_ids_for_urns(urns)
    missing = [u for u, c in zip(urns, found, strict=True) if c is None]
    if missing and create:
        made = await store.create_contacts([(u, new_record(u, now)) for u in missing])
        made_for = dict(zip(missing, (c for c, _ in made), strict=True))
        found = [c or made_for[u] for u, c in zip(urns, found, strict=True)]
    return found
