-- The id of the group with this name, created (with the uuid given) when new. Groups made
-- before groups had uuids keep the number they were given (from the counter) as their id.
-- KEYS: 1 name -> id hash, 2 id counter (unused now)   ARGV: 1 name, 2 now,
--       3 group key pattern (%s = id), 4 the new group's uuid
local id = redis.call('HGET', KEYS[1], ARGV[1])
if id then return {id, 0} end
id = ARGV[4]
redis.call('HSET', KEYS[1], ARGV[1], id)
redis.call('HSET', string.format(ARGV[3], id), 'name', ARGV[1], 'created_on', ARGV[2])
return {id, 1}
