"""The admin HTTP API: the app factory (``app``), its middleware, one module per resource
(``flows``, ``contacts``, ``groups``, ``starts``, ``runs``, ``templates``, ``channels``,
``health``), the request/response models (``models``) and the OpenAPI document generated from
them (``openapi``). Others import :func:`bot.api.app.create_app` only.

May import ``bot.work`` and everything below it. Resource modules import ``context``, ``routes``,
``models`` and ``lookup``, never each other. See docs/api.md.
"""
