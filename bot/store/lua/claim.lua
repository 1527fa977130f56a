-- Take a contact's lock and read what a worker needs to apply its queued events.
-- When another worker holds the lock, leave a timer that signals the contact again when that
-- lock expires: if the holder died mid-sprint, its events are not stranded.
-- KEYS: lock, queue, contact, session, timers   ARGV: token, ttl_ms, max_events, contact uuid
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local holder = redis.call('GET', KEYS[1])
  local ttl = redis.call('PTTL', KEYS[1])
  if holder and ttl > 0 then
    local t = redis.call('TIME')
    local due = tonumber(t[1]) + tonumber(t[2]) / 1000000 + ttl / 1000
    redis.call('ZADD', KEYS[5], 'NX', due, ARGV[4] .. '|signal|' .. holder)
  end
  return false
end
local events = redis.call('LRANGE', KEYS[2], 0, tonumber(ARGV[3]) - 1)
return {events, redis.call('GET', KEYS[3]) or '', redis.call('GET', KEYS[4]) or ''}
