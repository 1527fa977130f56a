"""The HTTP calls of ``call_webhook`` nodes, made by the worker outside the state machine.

Flow authors control the URL (with contact data in it), so by default a call may not reach
loopback, private, link-local or otherwise internal addresses (``bot/core/netguard.py``, shared
with the channels that post to a configured URL; ``engine.webhook_allow_private = true`` lifts
this).
Answers are capped at 256 KiB; a JSON answer becomes ``@webhook``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import aiohttp

from bot.core.jsonin import loads
from bot.core.netguard import BlockedAddress, PublicOnlyResolver, check_literal

MAX_BODY = 256 * 1024


class WebhookCaller:
    def __init__(self, allow_private: bool = False) -> None:
        self.allow_private = allow_private
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers={"User-Agent": "Chasqui"},
                connector=aiohttp.TCPConnector(
                    limit=100, resolver=None if self.allow_private else PublicOnlyResolver()
                ),
            )
        return self._session

    async def call(self, request: dict[str, Any]) -> dict[str, Any]:
        """Make the call; always answers a dict with ``status`` (0 when no HTTP answer)."""
        url = request["url"]
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return {"status": 0, "error": f"not an http(s) URL: {url!r}"}
        try:
            if not self.allow_private:  # an address literal never reaches the resolver
                check_literal(parts.hostname)
            timeout = aiohttp.ClientTimeout(total=float(request.get("timeout", 10)))
            async with self._client().request(
                request.get("method", "GET"),
                url,
                headers=request.get("headers") or {},
                data=(request.get("body") or "").encode() or None,
                timeout=timeout,
                allow_redirects=False,
            ) as response:
                body = await response.content.read(MAX_BODY)
                text = body.decode("utf-8", errors="replace")
                try:
                    parsed = loads(text) if text else None
                except ValueError:
                    parsed = None
                return {"status": response.status, "json": parsed, "body": text[:2000]}
        except BlockedAddress as exc:
            return {"status": 0, "error": str(exc)}
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            return {"status": 0, "error": f"{type(exc).__name__}: {exc}"}
