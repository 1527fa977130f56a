-- Write a contact the API changed: only while no worker holds the contact's lock (a sprint
-- in progress would overwrite it with the copy it read) and only if the record is still the one
-- the change was computed from (compare-and-set). Group sets follow in the same step.
-- KEYS: 1 lock, 2 contact, 3 search index
-- ARGV: 1 expected json, 2 new json, 3 contact uuid, 4 members key pattern (%s = group id),
--       5 n group ids to add to, ids..., n group ids to remove from, ids...,
--       n search members to remove, members..., n search members to add, members...
-- Returns 'ok', 'busy' (locked: retry after the sprint) or 'changed' (re-read and retry).
if redis.call('EXISTS', KEYS[1]) == 1 then return 'busy' end
if (redis.call('GET', KEYS[2]) or '') ~= ARGV[1] then return 'changed' end
redis.call('SET', KEYS[2], ARGV[2])
local i = 5
local n = tonumber(ARGV[i])
for k = 1, n do redis.call('SADD', string.format(ARGV[4], ARGV[i + k]), ARGV[3]) end
i = i + n + 1
n = tonumber(ARGV[i])
for k = 1, n do redis.call('SREM', string.format(ARGV[4], ARGV[i + k]), ARGV[3]) end
i = i + n + 1
n = tonumber(ARGV[i])
for k = 1, n do redis.call('ZREM', KEYS[3], ARGV[i + k]) end
i = i + n + 1
for k = 1, tonumber(ARGV[i]) do redis.call('ZADD', KEYS[3], 0, ARGV[i + k]) end
return 'ok'
