-- Take a contact's lock and read what a worker needs to apply its queued events.
-- When another worker holds the lock, leave a timer that signals the contact again when that
-- lock expires: if the holder died mid-sprint, its events are not stranded.
-- KEYS: lock, queue, contact, session, timers   ARGV: token, ttl_ms, max_events, contact uuid
--!include lock
if not take_or_cover(KEYS[1], ARGV[1], ARGV[2], KEYS[5], ARGV[4] .. '|signal') then
  return false
end
local events = redis.call('LRANGE', KEYS[2], 0, tonumber(ARGV[3]) - 1)
return {events, redis.call('GET', KEYS[3]) or '', redis.call('GET', KEYS[4]) or ''}
