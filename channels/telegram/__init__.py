"""Telegram Bot API channel: ``channel`` does the I/O, the other modules the protocol."""

from channels.telegram.channel import TelegramChannel

CHANNEL = TelegramChannel

__all__ = ["CHANNEL", "TelegramChannel"]
