"""The HTTP calls of ``call_webhook`` nodes, made by the worker outside the state machine.

Flow authors control the URL (with contact data in it), so by default a call may not reach
loopback, private, link-local or otherwise internal addresses: we resolve the host ourselves and
refuse before connecting -- in the connector's resolver, so the addresses checked are the ones
connected to (no DNS rebinding) -- (``engine.webhook_allow_private = true`` lifts this). An IPv6
address that carries an IPv4 one (mapped, 6to4, NAT64, IPv4-compatible) is judged by that IPv4
address too: ``[::127.0.0.1]`` is loopback.
Answers are capped at 256 KiB; a JSON answer becomes ``@webhook``.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from bot.core.jsonin import loads

MAX_BODY = 256 * 1024


class BlockedAddress(Exception):
    pass


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052: the IPv4 address is the last 32 bits
NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215: for local use, never public


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries and leads to: IPv4-mapped (``::ffff:a.b.c.d``),
    6to4 (``2002:AABB:CCDD::``), NAT64 (``64:ff9b::a.b.c.d``) or IPv4-compatible
    (``::a.b.c.d``, deprecated but still routed by some stacks)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in NAT64 or int(ip) >> 32 == 0:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in NAT64_LOCAL:
            return False
        inner = embedded_ipv4(ip)
        if inner is not None and not _public(str(inner)):
            return False
    return ip.is_global and not ip.is_multicast


class PublicOnlyResolver(aiohttp.abc.AbstractResolver):
    """Resolves like aiohttp does, then refuses non-public addresses. The check is made on the
    very addresses the connection will use, so a host cannot pass it and then re-resolve to a
    private address (DNS rebinding)."""

    def __init__(self) -> None:
        self._inner = aiohttp.DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[aiohttp.abc.ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            if not _public(result["host"]):
                raise BlockedAddress(f"{host} resolves to {result['host']}, a non-public address")
        return results

    async def close(self) -> None:
        await self._inner.close()


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
            if not self.allow_private and _is_ip(parts.hostname) and not _public(parts.hostname):
                # an address literal never reaches the resolver: check it here
                raise BlockedAddress(f"{parts.hostname} is a non-public address")
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
