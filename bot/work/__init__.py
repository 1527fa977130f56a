"""The worker loops (claim -> engine -> commit -> send), starts, outbound webhook calls, and the
runtime that wires one process together.

May import ``bot.engine``, ``bot.flow``, ``bot.store``, ``bot.core`` and ``channels.protocol``.
"""
