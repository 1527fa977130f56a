"""Flow files: YAML with lines, node kinds, case tests, expressions, the compiled machine.

May import ``bot.core`` only: a flow is data and knows nothing of contacts' state, Redis or HTTP.
"""
