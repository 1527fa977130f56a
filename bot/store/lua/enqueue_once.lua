-- Queue an event for a contact unless its key was seen (a provider's redelivery), atomically:
-- the dedup mark and the event land together or not at all.
-- KEYS: seen, queue, ready   ARGV: ttl seconds, event json, contact uuid
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('XADD', KEYS[3], '*', 'c', ARGV[3])
return 1
