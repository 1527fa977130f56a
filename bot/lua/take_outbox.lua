-- Take a contact's send lock and read the messages waiting in its outbox, oldest first, with
-- their delivery state (attempts so far).
-- KEYS: sendlock, outbox, msgs   ARGV: token, ttl_ms, max
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return false
end
local ids = redis.call('LRANGE', KEYS[2], 0, tonumber(ARGV[3]) - 1)
if #ids == 0 then
  redis.call('DEL', KEYS[1])
  return {}
end
local states = {}
for k, id in ipairs(ids) do states[k] = id .. ':s' end
return {redis.call('HMGET', KEYS[3], unpack(ids)), redis.call('HMGET', KEYS[3], unpack(states))}
