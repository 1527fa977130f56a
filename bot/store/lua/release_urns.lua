-- Take URNs a contact lost out of the index, each only while it still names that contact
-- (another contact may have claimed it since).
-- KEYS: the URNs' index keys
-- ARGV: the contact's uuid
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then redis.call('DEL', KEYS[i]) end
end
return 0
