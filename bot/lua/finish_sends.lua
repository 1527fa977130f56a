-- Record send outcomes, drop them from the outbox, queue failure events, release the send lock.
-- KEYS: sendlock, outbox, msgs, sendq, queue, ready
-- ARGV: token, contact uuid, n, (uuid, message json, failure event json or '')...
local n = tonumber(ARGV[3])
local failed = 0
for k = 0, n - 1 do
  local id, json, event = ARGV[4 + 3 * k], ARGV[5 + 3 * k], ARGV[6 + 3 * k]
  redis.call('HSET', KEYS[3], id, json)
  redis.call('LREM', KEYS[2], 1, id)
  if event ~= '' then
    redis.call('RPUSH', KEYS[5], event)
    failed = failed + 1
  end
end
if failed > 0 then redis.call('XADD', KEYS[6], '*', 'c', ARGV[2]) end
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
local left = redis.call('LLEN', KEYS[2])
if left > 0 then redis.call('XADD', KEYS[4], '*', 'c', ARGV[2]) end
return left
