"""The groups API: list, create, read, rename, delete, and members in bulk. Routes take a
group's uuid (a name is accepted too); bodies may name groups either way. ``create`` and
``change_members`` are the services Studio's pages call too."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from bot.api import models as m
from bot.api.context import now, store
from bot.api.lookup import busy, contacts_for_urns, group_or_404
from bot.api.routes import Op, body, query
from bot.core.contacts import UrnError, normalize_urn
from bot.core.errors import ApiError
from bot.store import ContactBusy, Store
from bot.store.paging import decode_cursor, encode_cursor

NAME = re.compile(r"^.{1,64}$", re.DOTALL)


def public(group: dict[str, Any]) -> dict[str, Any]:
    return {k: group[k] for k in ("uuid", "name", "count", "created_on")}


# -- the services: pages, the JSON API and the CLI call these -----------------------------------
async def create(st: Store, at: float, spec: m.GroupCreate) -> dict[str, Any]:
    """Create a group; 409 ``group_exists`` when the name is taken."""
    _, created = await st.ensure_group(spec.name, at)
    if not created:
        raise ApiError(409, "group_exists", f"there is a group {spec.name!r} already")
    return public(await group_or_404(st, spec.name))


async def change_members(
    st: Store, at: float, group: dict[str, Any], spec: m.Members, adding: bool
) -> dict[str, Any]:
    """Add (``adding``) or remove members of ``group`` (as :func:`group_or_404` gives it) in
    bulk; the group set and each contact's ``groups`` list change together (one script per
    contact). What was wrong is listed, not raised."""
    name = group["name"]
    cids, problems = await _members_of_body(st, spec, at, adding)

    def change(contact: dict[str, Any]) -> dict[str, Any] | None:
        groups = list(contact.get("groups") or [])
        if (name in groups) == adding:
            return None
        contact["groups"] = [*groups, name] if adding else [g for g in groups if g != name]
        return contact

    try:
        results = await st.update_contacts(cids, change, at)
    except ContactBusy as exc:
        raise busy(exc) from None
    for cid in cids:
        if results.get(cid) is None:
            problems.append(
                {"contact": cid, "code": "unknown_contact", "message": "no such contact"}
            )
    if adding:  # a member whose list already had the group: make sure the set has it too
        await st.add_memberships([(group["id"], c) for c in cids if results.get(c) is not None])
    done = sum(1 for c in cids if results.get(c) is not None)
    return {"group": group["uuid"], "added" if adding else "removed": done, "errors": problems}


# -- the JSON API --------------------------------------------------------------------------------
async def list_groups(request: web.Request) -> web.Response:
    """Every group by name, paged like every list."""
    q = query(request, m.Page)
    after = decode_cursor(q.cursor, NAME) if q.cursor else None
    groups = [g for g in await store(request).groups() if after is None or g["name"] > after]
    page = groups[: q.limit]
    more = len(groups) > q.limit
    return web.json_response(
        {
            "groups": [public(g) for g in page],
            "next": encode_cursor(page[-1]["name"]) if more else None,
        }
    )


async def create_group(request: web.Request) -> web.Response:
    spec = await body(request, m.GroupCreate)
    return web.json_response(await create(store(request), now(request), spec), status=201)


async def get_group(request: web.Request) -> web.Response:
    return web.json_response(public(await group_or_404(store(request), request.match_info["uuid"])))


async def _rename_in_members(store: Store, gid: str, now: float, old: str, new: str) -> None:
    """Rename the group in every member's ``groups`` list, a batch of members at a time."""
    async for batch in store.group_members(gid):

        def change(contact: dict[str, Any]) -> dict[str, Any] | None:
            groups = list(contact.get("groups") or [])
            if old not in groups:
                return None
            contact["groups"] = [new if g == old else g for g in groups if g != new]
            return contact

        await store.update_contacts(batch, change, now)


async def rename_group(request: web.Request) -> web.Response:
    st, at = store(request), now(request)
    group = await group_or_404(st, request.match_info["uuid"])
    new = (await body(request, m.GroupRename)).name
    if new != group["name"]:
        if not await st.rename_group(group["id"], group["name"], new):
            raise ApiError(409, "group_exists", f"there is a group {new!r} already")
        try:
            await _rename_in_members(st, group["id"], at, group["name"], new)
        except ContactBusy as exc:
            raise busy(exc) from None
    return web.json_response(public({**group, "name": new}))


async def delete_group(request: web.Request) -> web.Response:
    st, at = store(request), now(request)
    group = await group_or_404(st, request.match_info["uuid"])
    name = group["name"]
    try:
        # the members' lists first (the set tells who they are), then the group itself
        async for batch in st.group_members(group["id"]):

            def change(contact: dict[str, Any]) -> dict[str, Any] | None:
                groups = list(contact.get("groups") or [])
                if name not in groups:
                    return None
                contact["groups"] = [g for g in groups if g != name]
                return contact

            await st.update_contacts(batch, change, at)
    except ContactBusy as exc:
        raise busy(exc) from None
    await st.drop_group(group["id"], name)
    return web.json_response({"deleted": group["uuid"]})


async def _members_of_body(
    st: Store, spec: m.Members, now: float, create: bool
) -> tuple[list[str], list[dict[str, Any]]]:
    """The contact uuids a members body names (``contacts`` or ``urns``), and what was wrong."""
    if spec.contacts is not None:
        return list(dict.fromkeys(spec.contacts)), []
    cids: list[str] = []
    problems: list[dict[str, Any]] = []
    urns: list[str] = []
    for raw in spec.urns or []:
        try:
            urns.append(normalize_urn(raw))
        except UrnError as exc:
            problems.append({"urn": raw, "code": "invalid_urn", "message": str(exc)})
    urns = list(dict.fromkeys(urns))
    found = await contacts_for_urns(st, urns, now, create=create)
    for urn, cid in zip(urns, found, strict=True):
        if cid is None:
            problems.append({"urn": urn, "code": "unknown_contact", "message": f"no contact {urn}"})
        else:
            cids.append(cid)
    return cids, problems


async def members_handler(request: web.Request) -> web.Response:
    """POST adds, DELETE removes members in bulk."""
    st, adding = store(request), request.method == "POST"
    group = await group_or_404(st, request.match_info["uuid"])
    spec = await body(request, m.Members)
    return web.json_response(await change_members(st, now(request), group, spec, adding))


GROUP_BUSY = ("unknown_group", "contact_busy")
OPS = [
    Op(
        "GET",
        "/api/v1/groups",
        list_groups,
        "Groups by name, paged",
        m.GroupPage,
        query=m.Page,
        errors=("bad_request",),
    ),
    Op(
        "POST",
        "/api/v1/groups",
        create_group,
        "Create a group",
        m.Group,
        status=201,
        body=m.GroupCreate,
        errors=("invalid_body", "group_exists"),
    ),
    Op("GET", "/api/v1/groups/{uuid}", get_group, "A group", m.Group, errors=("unknown_group",)),
    Op(
        "PATCH",
        "/api/v1/groups/{uuid}",
        rename_group,
        "Rename a group",
        m.Group,
        body=m.GroupRename,
        errors=("invalid_body", "group_exists", *GROUP_BUSY),
    ),
    Op(
        "DELETE",
        "/api/v1/groups/{uuid}",
        delete_group,
        "Delete a group (its members stay)",
        m.Deleted,
        errors=GROUP_BUSY,
    ),
    Op(
        "POST",
        "/api/v1/groups/{uuid}/members",
        members_handler,
        "Add members by contact uuid or URN (URNs without a contact get one)",
        m.MembersChanged,
        body=m.Members,
        errors=("invalid_body", *GROUP_BUSY),
    ),
    Op(
        "DELETE",
        "/api/v1/groups/{uuid}/members",
        members_handler,
        "Remove members by contact uuid or URN",
        m.MembersChanged,
        body=m.Members,
        errors=("invalid_body", *GROUP_BUSY),
    ),
]
