"""The ground every layer stands on: configuration, time, durations, contact rules, API errors.

May import nothing of Chasqui; anything in ``bot`` and ``channels`` may import it.
"""
