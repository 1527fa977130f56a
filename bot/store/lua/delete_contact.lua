-- Delete a contact with its history, while holding its lock (taken by the caller).
-- KEYS: 1 lock
-- ARGV: 1 token, 2 contact uuid, 3 contacts index key, 4 its index member, 5 timers key,
--       6 members key pattern, then n keys to delete..., n URN index keys..., n group ids...,
--       n timer members..., n run index entries, (key, member)..., n waiting counters to
--       decrement, (stats key, field)..., search index key, its members there...
-- URN index entries are removed only where they still name this contact.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local i = 7
local function take()
  local v = ARGV[i]; i = i + 1; return v
end
for _ = 1, tonumber(take()) do redis.call('DEL', take()) end
for _ = 1, tonumber(take()) do
  local key = take()
  if redis.call('GET', key) == ARGV[2] then redis.call('DEL', key) end
end
for _ = 1, tonumber(take()) do redis.call('SREM', string.format(ARGV[6], take()), ARGV[2]) end
for _ = 1, tonumber(take()) do redis.call('ZREM', ARGV[5], take()) end
for _ = 1, tonumber(take()) do
  local key, member = take(), take()
  redis.call('ZREM', key, member)
end
for _ = 1, tonumber(take()) do
  local key, field = take(), take()
  redis.call('HINCRBY', key, field, -1)
end
local search = take()
while i <= #ARGV do redis.call('ZREM', search, take()) end
redis.call('ZREM', ARGV[3], ARGV[4])
redis.call('DEL', KEYS[1])
return 1
