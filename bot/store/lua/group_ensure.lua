-- The id of the group with this name, created (next number) when new.
-- KEYS: 1 name -> id hash, 2 id counter   ARGV: 1 name, 2 now, 3 group key pattern (%s = id)
local id = redis.call('HGET', KEYS[1], ARGV[1])
if id then return {id, 0} end
id = tostring(redis.call('INCR', KEYS[2]))
redis.call('HSET', KEYS[1], ARGV[1], id)
redis.call('HSET', string.format(ARGV[3], id), 'name', ARGV[1], 'created_on', ARGV[2])
return {id, 1}
