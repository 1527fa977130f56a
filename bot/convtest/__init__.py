"""Conversation tests (``chasqui test``) and the terminal simulator (``chasqui simulate``).

May import ``bot.work`` and everything below it.
"""
