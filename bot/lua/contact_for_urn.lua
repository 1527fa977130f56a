-- Find the contact of a URN, creating it when new, so two concurrent webhooks make one contact.
-- KEYS: urn index key, contact key for the proposed uuid   ARGV: proposed uuid, contact json
local existing = redis.call('GET', KEYS[1])
if existing then return {existing, 0} end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
return {ARGV[1], 1}
