"""Every Redis key and Lua script, the embedded Valkey, connections and paging.

Nothing outside this package names a key or calls Redis directly. May import ``bot.core`` only:
the store knows no flow semantics and no channel.
"""
