-- Turn due timers into events on their contact's queue. Members are "<contact>|<kind>|<token>".
-- Kind "send" is a send retry: it signals the senders instead; kind "signal" only signals the
-- workers (left by claim.lua when a contact's lock was held: it fires when that lock expires).
-- KEYS: timers, ready, sendq   ARGV: now, limit, queue key pattern (with %s for the contact uuid)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, ARGV[2])
for k = 1, #due, 2 do
  local member, at = due[k], due[k + 1]
  local contact, kind, token = string.match(member, '^([^|]+)|([^|]+)|(.+)$')
  redis.call('ZREM', KEYS[1], member)
  if contact and kind == 'send' then
    redis.call('XADD', KEYS[3], '*', 'c', contact)
  elseif contact and kind == 'signal' then
    redis.call('XADD', KEYS[2], '*', 'c', contact)
  elseif contact then
    local event = cjson.encode({type = kind, token = token, at = tonumber(at)})
    redis.call('RPUSH', string.format(ARGV[3], contact), event)
    redis.call('XADD', KEYS[2], '*', 'c', contact)
  end
end
return #due / 2
