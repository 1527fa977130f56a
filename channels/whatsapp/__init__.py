"""WhatsApp Cloud API channel: ``channel`` does the I/O, the other modules the protocol."""

from channels.whatsapp.channel import WhatsAppChannel

CHANNEL = WhatsAppChannel

__all__ = ["CHANNEL", "WhatsAppChannel"]
