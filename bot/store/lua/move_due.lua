-- Move a scheduled start chunk to the starts stream, if it is still scheduled: one process wins
-- it, and the move is whole (an outage between the two writes would lose the start's chain).
-- KEYS: starts_due (zset), startq (stream)   ARGV: start uuid
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('XADD', KEYS[2], '*', 's', ARGV[1])
  return 1
end
return 0
