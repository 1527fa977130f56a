"""The aiohttp application: middleware, one module per resource, the OpenAPI document.

May import ``bot.work`` and everything below it.
"""
