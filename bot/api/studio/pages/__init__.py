"""Studio's pages, one module per area, each with ``routes`` and its templates in
``templates/<area>/``; listed in :data:`bot.api.studio.app.PAGE_MODULES`."""
