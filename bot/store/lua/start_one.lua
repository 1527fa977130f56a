-- Decide one contact of a start, at most once per start (a replayed chunk finds it seen).
-- KEYS: 1 seen set, 2 start hash, 3 start contacts hash, 4 contact queue, 5 ready stream
-- ARGV: 1 contact uuid, 2 outcome (started | skipped | failed), 3 reason, 4 start event json
-- Returns 1 when decided now, 0 when already decided, -1 when the start was cancelled.
if redis.call('HGET', KEYS[2], 'status') == 'cancelled' then return -1 end
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[2], 'targeted', 1)
if ARGV[2] == 'started' then
  redis.call('RPUSH', KEYS[4], ARGV[4])
  redis.call('XADD', KEYS[5], '*', 'c', ARGV[1])
  redis.call('HINCRBY', KEYS[2], 'started', 1)
  redis.call('HINCRBY', KEYS[2], 'accepted', 1)  -- started at first: its first message is due
  redis.call('HSET', KEYS[3], ARGV[1], 'started')
else
  redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
  if ARGV[2] == 'skipped' then redis.call('HINCRBY', KEYS[2], 'skipped:' .. ARGV[3], 1) end
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[2] .. ':' .. ARGV[3])
end
return 1
