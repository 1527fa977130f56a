"""Studio over plain HTTP: an :class:`Api`'s client signed in through the sign-in form, as a
browser does (cookies kept by the client), and the CSRF token read off the pages."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from tests.support.api import TOKEN, Api

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "the page has no CSRF field"
    return found.group(1)


class Studio:
    """Pages of a running app, fetched by a signed-in client."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.client = api.client
        self.csrf = ""

    async def sign_in(self, token: str = TOKEN, headers: Mapping[str, str] | None = None) -> int:
        """Sign in through the form; the status of the answer (303 when it worked)."""
        status, html = await self.get("/studio/signin", headers=headers)
        assert status == 200, html
        async with self.client.post(
            "/studio/signin",
            data={"csrf": csrf_of(html), "token": token, "next": "/studio/"},
            allow_redirects=False,
            headers=headers,
        ) as resp:
            if resp.status == 303:
                _, home = await self.get("/studio/", headers=headers)
                self.csrf = csrf_of(home)
            return resp.status

    async def get(
        self, path: str, headers: Mapping[str, str] | None = None, **kwargs: Any
    ) -> tuple[int, str]:
        """``(status, HTML)``, redirects not followed."""
        async with self.client.get(path, allow_redirects=False, headers=headers, **kwargs) as resp:
            return resp.status, await resp.text()

    async def post(
        self, path: str, data: Mapping[str, str] | None = None, *, csrf: bool = True, **kwargs: Any
    ) -> tuple[int, str, str]:
        """``(status, Location, HTML)`` of a form POST carrying the session's CSRF token (unless
        ``csrf=False``), redirects not followed."""
        fields = {**({"csrf": self.csrf} if csrf else {}), **(data or {})}
        async with self.client.post(path, data=fields, allow_redirects=False, **kwargs) as resp:
            return resp.status, resp.headers.get("Location", ""), await resp.text()
