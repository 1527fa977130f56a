-- Included (--!include lock, bot/store/scripts.py), not called: take_or_cover(...) takes a
-- contact's lock (its events' or its send line's) for ``token``; when another holds it, leaves
-- the timer "<member_prefix>|<holder>" due when that lock expires, so the contact is signalled
-- again should the holder have died (bot/store/lua/fire_timers.lua). True when the lock is ours.
local function take_or_cover(lock, token, ttl_ms, timers, member_prefix)
  if redis.call('SET', lock, token, 'NX', 'PX', ttl_ms) then return true end
  local holder = redis.call('GET', lock)
  local ttl = redis.call('PTTL', lock)
  if holder and ttl > 0 then
    local t = redis.call('TIME')
    local due = tonumber(t[1]) + tonumber(t[2]) / 1000000 + ttl / 1000
    redis.call('ZADD', timers, 'NX', due, member_prefix .. '|' .. holder)
  end
  return false
end
