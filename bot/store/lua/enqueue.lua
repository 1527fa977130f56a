-- Queue an event for a contact and signal the workers, in one step.
-- KEYS: queue, ready   ARGV: event json, contact uuid
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('XADD', KEYS[2], '*', 'c', ARGV[2])
return 1
