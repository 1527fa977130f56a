-- Included (--!include lock, bot/store/scripts.py), not called: a contact's locks (its events'
-- and its send line's) and the timers that cover them. A timer "<contact>|signal|<token>" or
-- "<contact>|send|<token>" due when a lock expires signals the contact again then
-- (bot/store/lua/fire_timers.lua), should the lock's holder have died holding it.

-- Valkey's time, ``ms`` from now, in seconds (the timers' scores).
local function due_in(ms)
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(ms) / 1000
end

-- Take ``lock`` for ``token`` with a timer ``member`` covering us until it expires; false (and
-- nothing written) when the lock is held.
local function take_covered(lock, token, ttl_ms, timers, member)
  if not redis.call('SET', lock, token, 'NX', 'PX', ttl_ms) then return false end
  redis.call('ZADD', timers, due_in(ttl_ms), member)
  return true
end

-- Take ``lock`` for ``token``; when another holds it, leave the timer
-- "<member_prefix>|<holder>" due when that lock expires. True when the lock is ours.
local function take_or_cover(lock, token, ttl_ms, timers, member_prefix)
  if redis.call('SET', lock, token, 'NX', 'PX', ttl_ms) then return true end
  local holder = redis.call('GET', lock)
  local ttl = redis.call('PTTL', lock)
  if holder and ttl > 0 then
    redis.call('ZADD', timers, 'NX', due_in(ttl), member_prefix .. '|' .. holder)
  end
  return false
end
