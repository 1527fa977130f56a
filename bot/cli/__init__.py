"""The ``chasqui`` command. May import everything."""
