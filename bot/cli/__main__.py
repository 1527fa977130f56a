"""``python -m bot.cli``: the ``chasqui`` command without the console script."""

from bot.cli.main import main

raise SystemExit(main())
