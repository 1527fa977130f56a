-- After a contact's sends: drop the messages that are done from its outbox, release the send
-- lock, and signal again if messages are left -- unless a message waits for a retry timer.
-- KEYS: sendlock, outbox, sendq   ARGV: token, contact uuid, hold ('1'|'0'), message uuids done...
for k = 4, #ARGV do redis.call('LREM', KEYS[2], 1, ARGV[k]) end
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
local left = redis.call('LLEN', KEYS[2])
if left > 0 and ARGV[3] ~= '1' then redis.call('XADD', KEYS[3], '*', 'c', ARGV[2]) end
return left
