-- Find the contact of a URN, creating it when new, so two concurrent webhooks make one contact.
-- An index entry whose contact record is gone is repaired with the new record.
-- KEYS: urn index key, contact key for the proposed uuid, contacts index (sorted set)
-- ARGV: proposed uuid, contact json, contact key pattern (%s = uuid), created_on (index prefix)
local existing = redis.call('GET', KEYS[1])
if existing then
  if redis.call('EXISTS', string.format(ARGV[3], existing)) == 1 then return {existing, 0} end
  local record = cjson.decode(ARGV[2])
  record.uuid = existing
  redis.call('SET', string.format(ARGV[3], existing), cjson.encode(record))
  redis.call('ZADD', KEYS[3], 0, ARGV[4] .. '|' .. existing)
  return {existing, 1}
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[3], 0, ARGV[4] .. '|' .. ARGV[1])
return {ARGV[1], 1}
