"""Studio: the operator's web pages at ``/studio/``, server-rendered, beside the JSON API and
calling the same services (docs/studio.md). :func:`bot.api.studio.app.studio_app` builds it."""
