-- Index URNs to a contact, all or none: a URN indexed to another contact that still exists
-- refuses the whole claim (answered with that URN's position, 1-based, and its contact).
-- KEYS: the URNs' index keys
-- ARGV: the contact's uuid, contact key pattern (%s = uuid)
for i = 1, #KEYS do
  local owner = redis.call('GET', KEYS[i])
  if owner and owner ~= ARGV[1] and redis.call('EXISTS', string.format(ARGV[2], owner)) == 1 then
    return {i, owner}
  end
end
for i = 1, #KEYS do redis.call('SET', KEYS[i], ARGV[1]) end
return {0, ARGV[1]}
