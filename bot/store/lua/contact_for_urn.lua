-- Find the contact of a URN, creating it when new, so two concurrent webhooks make one contact.
-- An index entry whose contact record is gone answers 2: the caller writes the record under
-- that uuid (re-encoding JSON here would turn [] into {}). A new contact with several URNs
-- indexes them all, unless one of the others has a contact already: that one is answered, 0.
-- KEYS: urn index key, contact key for the proposed uuid, contacts index (sorted set),
--       search index (sorted set), then the index keys of the contact's other URNs
-- ARGV: proposed uuid, contact json, contact key pattern (%s = uuid), created_on (index prefix),
--       then the contact's search index members
local existing = redis.call('GET', KEYS[1])
if existing then
  if redis.call('EXISTS', string.format(ARGV[3], existing)) == 1 then return {existing, 0} end
  return {existing, 2}
end
for i = 5, #KEYS do
  local other = redis.call('GET', KEYS[i])
  if other and redis.call('EXISTS', string.format(ARGV[3], other)) == 1 then return {other, 0} end
end
redis.call('SET', KEYS[1], ARGV[1])
for i = 5, #KEYS do redis.call('SET', KEYS[i], ARGV[1]) end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[3], 0, ARGV[4] .. '|' .. ARGV[1])
for i = 5, #ARGV do redis.call('ZADD', KEYS[4], 0, ARGV[i]) end
return {ARGV[1], 1}
