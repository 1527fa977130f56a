-- What became of one contact's sends, in one call: each sent message's provider id indexed, its
-- status applied monotonically (lua/status.lua, as a status webhook applies it: start counters,
-- a failure event), the messages that are done dropped from the outbox, a message to retry given
-- its timer (it holds the line), the line's cover timer removed, the send lock released if still
-- ours, and the contact signalled again if messages are left -- unless one waits for a retry.
-- KEYS: sendlock, outbox, msgs, queue, ready, sendq, timers
-- ARGV: token, contact uuid, provider id ttl (s), start hash pattern, start contacts hash
--       pattern, start outcome buckets pattern, n outcomes, then per outcome: message uuid,
--       status (sent | failed | retry | skip), at, error json, extra state json, provider id key
--       ('' if none), retry at ('' if none)
-- Returns the number of messages left in the outbox.
--!include status
local token, cid = ARGV[1], ARGV[2]
local hold = false
local i = 8
for _ = 1, tonumber(ARGV[7]) do
  local id, status, at, err, extra, ext, retry_at =
    ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6]
  i = i + 7
  if ext ~= '' then redis.call('SET', ext, cid .. ' ' .. id, 'EX', ARGV[3]) end
  if status == 'retry' then
    hold = true
    redis.call('ZADD', KEYS[7], tonumber(retry_at) or at, cid .. '|send|' .. id)
    apply_status(KEYS[3], KEYS[4], KEYS[5], id, 'queued', at, '', cid, extra)
  else
    redis.call('LREM', KEYS[2], 1, id)
    if status ~= 'skip' then  -- skip: an earlier take already sent it; only drop it
      apply_status(KEYS[3], KEYS[4], KEYS[5], id, status, at, err, cid, extra,
                   ARGV[4], ARGV[5], ARGV[6])
    end
  end
end
redis.call('ZREM', KEYS[7], cid .. '|send|' .. token)
if redis.call('GET', KEYS[1]) == token then redis.call('DEL', KEYS[1]) end
local left = redis.call('LLEN', KEYS[2])
if left > 0 and not hold then redis.call('XADD', KEYS[6], '*', 'c', cid) end
return left
