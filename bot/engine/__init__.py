"""The engine: apply one event to one contact's sprint; opt-out rules; flow counters.

Pure: no I/O, no Redis, no HTTP. May import ``bot.flow`` and ``bot.core``.
"""
