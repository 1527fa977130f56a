"""Groups: a name index (hash name -> id), one hash and one member set per group. A group's
id is its uuid (groups made before groups had uuids keep the number they were given)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from bot.store.base import StoreBase
from bot.store.keys import GROUP_SEQ, GROUPS, group_key, members_key


class GroupStore(StoreBase):
    async def group_ids(
        self, names: set[str] | Sequence[str], create: bool = False, now: float = 0.0
    ) -> dict[str, str]:
        """Group name -> id for the groups that exist (all of them, created, with ``create``)."""
        names = list(names)
        if not names:
            return {}
        found = await self._r.hmget(GROUPS, names)
        ids = {n: i.decode() for n, i in zip(names, found, strict=True) if i}
        if create:
            for name in names:
                if name not in ids:
                    ids[name], _ = await self.ensure_group(name, now)
        return ids

    async def ensure_group(self, name: str, now: float) -> tuple[str, bool]:
        gid, created = await self._script("group_ensure")(
            keys=[GROUPS, GROUP_SEQ], args=[name, now, group_key("%s"), str(uuid.uuid4())]
        )
        return (gid.decode() if isinstance(gid, bytes) else str(gid)), bool(created)

    async def group_by_ref(self, ref: str) -> dict[str, Any] | None:
        """The group with this uuid (its id), else with this name: uuid, id, name, created_on,
        count (members); None when there is none."""
        gid: str | None = ref if await self._r.exists(group_key(ref)) else None
        if gid is None:
            found = await self._r.hget(GROUPS, ref)
            gid = found.decode() if found else None
        if gid is None:
            return None
        async with self._r.pipeline(transaction=False) as pipe:
            pipe.hmget(group_key(gid), ["name", "created_on"])
            pipe.scard(members_key(gid))
            (name, created), count = await pipe.execute()
        if name is None:  # dropped meanwhile
            return None
        return {
            "uuid": gid,
            "id": gid,
            "name": name.decode(),
            "created_on": float(created or 0),
            "count": int(count),
        }

    async def groups(self) -> list[dict[str, Any]]:
        """Every group: uuid (= id), name, created_on, count (members), by name."""
        index = await self._r.hgetall(GROUPS)
        items = sorted((n.decode(), i.decode()) for n, i in index.items())
        async with self._r.pipeline(transaction=False) as pipe:
            for _, gid in items:
                pipe.hget(group_key(gid), "created_on")
                pipe.scard(members_key(gid))
            replies = await pipe.execute()
        return [
            {
                "uuid": gid,
                "id": gid,
                "name": name,
                "created_on": float(replies[2 * k] or 0),
                "count": int(replies[2 * k + 1]),
            }
            for k, (name, gid) in enumerate(items)
        ]

    async def group_members(self, gid: str, batch: int = 1000) -> AsyncIterator[list[str]]:
        """A group's member uuids, a batch at a time (SSCAN: never the whole set at once)."""
        cursor = 0
        while True:
            cursor, found = await self._r.sscan(members_key(gid), cursor, count=batch)
            if found:
                yield [m.decode() for m in found]
            if cursor == 0:
                return

    async def is_member(self, gid: str, cids: Sequence[str]) -> list[bool]:
        if not cids:
            return []
        return [bool(x) for x in await self._r.smismember(members_key(gid), list(cids))]

    async def rename_group(self, gid: str, old: str, new: str) -> bool:
        """Point the new name at the group; False if the new name is taken."""
        if not await self._r.hsetnx(GROUPS, new, gid):
            return False
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.hdel(GROUPS, old)
            pipe.hset(group_key(gid), "name", new)
            await pipe.execute()
        return True

    async def drop_group(self, gid: str, name: str) -> None:
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.hdel(GROUPS, name)
            pipe.delete(group_key(gid), members_key(gid))
            await pipe.execute()

    async def add_memberships(self, pairs: Sequence[tuple[str, str]]) -> None:
        """SADD (group id, contact uuid) pairs in one pipeline (new contacts of an import)."""
        if pairs:
            async with self._r.pipeline(transaction=False) as pipe:
                for gid, cid in pairs:
                    pipe.sadd(members_key(gid), cid)
                await pipe.execute()
