-- Take a contact's lock and read what a worker needs to apply its queued events.
-- KEYS: lock, queue, contact, session   ARGV: token, ttl_ms, max_events
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return false
end
local events = redis.call('LRANGE', KEYS[2], 0, tonumber(ARGV[3]) - 1)
return {events, redis.call('GET', KEYS[3]) or '', redis.call('GET', KEYS[4]) or ''}
