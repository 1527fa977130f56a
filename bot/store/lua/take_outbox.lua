-- Take a contact's send lock and read the messages waiting in its outbox, oldest first, with
-- their delivery state (attempts so far).
-- A head message waiting for its retry time holds the whole line: nothing is returned (its
-- "send" timer signals the contact again when the time comes).
-- (The timer is re-armed here too, so an early signal can never leave the line without one.)
-- When another sender holds the line, a "send" timer due when its lock expires makes sure the
-- line is signalled again should that sender have died (a commit that took the line inline
-- left one already; this re-arms it: lua/lock.lua, which claim.lua shares for the event lock).
-- KEYS: sendlock, outbox, msgs, timers   ARGV: token, ttl_ms, max, now, contact uuid
--!include lock
if not take_or_cover(KEYS[1], ARGV[1], ARGV[2], KEYS[4], ARGV[5] .. '|send') then
  return false
end
local ids = redis.call('LRANGE', KEYS[2], 0, tonumber(ARGV[3]) - 1)
if #ids == 0 then
  redis.call('DEL', KEYS[1])
  return {}
end
local head = redis.call('HGET', KEYS[3], ids[1] .. ':s')
if head then
  local retry_at = cjson.decode(head).retry_at
  if type(retry_at) == 'number' and retry_at > tonumber(ARGV[4]) then
    redis.call('ZADD', KEYS[4], 'NX', retry_at, ARGV[5] .. '|send|' .. ids[1])
    redis.call('DEL', KEYS[1])
    return {}
  end
end
local states = {}
for k, id in ipairs(ids) do states[k] = id .. ':s' end
return {redis.call('HMGET', KEYS[3], unpack(ids)), redis.call('HMGET', KEYS[3], unpack(states))}
