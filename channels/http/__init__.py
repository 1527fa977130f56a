"""The signed HTTP channel (Standard Webhooks both ways): ``ext:`` contacts reached through any
system that can POST JSON. See docs/channels/http.md."""

from channels.http.channel import HttpChannel

CHANNEL = HttpChannel

__all__ = ["CHANNEL", "HttpChannel"]
