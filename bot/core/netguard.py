"""Outbound HTTP to addresses someone else chose: refuse loopback, private, link-local and other
non-public addresses unless the operator allows them.

Used by ``call_webhook`` (``bot/work/webhook_calls.py``: flow authors write the URL) and by
channels whose settings name a URL to post to (re-exported by ``channels.protocol``). The check
happens in the connector's resolver, on the very addresses the connection will use, so a host
cannot pass it and then re-resolve to a private address (DNS rebinding); an address literal never
reaches the resolver, so :func:`check_literal` checks it first. An IPv6 address that carries an
IPv4 one (mapped, 6to4, NAT64, IPv4-compatible) is judged by that IPv4 address too:
``[::127.0.0.1]`` is loopback.
"""

from __future__ import annotations

import ipaddress
import socket

import aiohttp


class BlockedAddress(Exception):
    pass


NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052: the IPv4 address is the last 32 bits
NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215: for local use, never public


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


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


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in NAT64_LOCAL:
            return False
        inner = embedded_ipv4(ip)
        if inner is not None and not is_public(str(inner)):
            return False
    return ip.is_global and not ip.is_multicast


def check_literal(host: str) -> None:
    """Raise :class:`BlockedAddress` when ``host`` is a non-public address literal."""
    if is_ip(host) and not is_public(host):
        raise BlockedAddress(f"{host} is a non-public address")


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
            if not is_public(result["host"]):
                raise BlockedAddress(f"{host} resolves to {result['host']}, a non-public address")
        return results

    async def close(self) -> None:
        await self._inner.close()
