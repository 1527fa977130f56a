-- Apply a delivery status to a message, monotonically: queued < sent < delivered < read < played;
-- failed is final, and a late failed after delivered is ignored. Statuses arrive in any order.
-- The state lives beside the message, in the contact's msgs hash under "<uuid>:s" (flat JSON).
-- KEYS: msgs, queue, ready
-- ARGV: message uuid, status, at, error json ('' if none), contact uuid, extra state json ('' if none),
--       start hash pattern, start contacts hash pattern, start outcome buckets pattern
--       (%s = start uuid; '' or absent: none)
-- Returns the status now stored, or 'ignored' / 'unknown'.
-- A start's outcome buckets: one a minute in its first day, then one an hour (docs/redis.md).
local function bucket(skey, when)
  local since = tonumber(redis.call('HGET', skey, 'created_on')) or when
  local width = (when - since < 86400) and 60 or 3600
  return string.format('%d', math.floor(when / width) * width)
end
local rank = {queued = 0, accepted = 0, sent = 1, delivered = 2, read = 3, played = 4}
local id, incoming, at = ARGV[1], ARGV[2], tonumber(ARGV[3])
if redis.call('HEXISTS', KEYS[1], id) == 0 then return 'unknown' end
local raw = redis.call('HGET', KEYS[1], id .. ':s')
local state = raw and cjson.decode(raw) or {status = 'queued'}
if ARGV[6] ~= '' then
  for k, v in pairs(cjson.decode(ARGV[6])) do state[k] = v end
end
local current = state.status
local result = 'ignored'
if current ~= 'failed' then
  if incoming == 'failed' then
    if (rank[current] or 0) <= rank.sent then
      state.status = 'failed'
      state.failed_on = at
      if ARGV[4] ~= '' then state.error = cjson.decode(ARGV[4]) end
      result = 'failed'
    end
  elseif rank[incoming] and rank[incoming] > (rank[current] or -1) then
    state.status = incoming
    result = incoming
  end
  if rank[incoming] and state[incoming .. '_on'] == nil then state[incoming .. '_on'] = at end
end
redis.call('HSET', KEYS[1], id .. ':s', cjson.encode(state))
-- a message a start caused: the start's outcome counters move with it (each rank reached once)
if result ~= 'ignored' and result ~= 'queued' and ARGV[7] and ARGV[7] ~= '' then
  local msg = cjson.decode(redis.call('HGET', KEYS[1], id))
  if type(msg.start) == 'string' then
    local skey = string.format(ARGV[7], msg.start)
    if msg.opening and current == 'queued' then  -- the contact's first message has its outcome
      redis.call('HINCRBY', skey, 'opened', 1)
    end
    local bkey, at_bucket = string.format(ARGV[9], msg.start), bucket(skey, at)
    if result == 'failed' then
      local code = state.error and state.error.code
      redis.call('HINCRBY', skey, 'msg_failed', 1)
      redis.call('HINCRBY', bkey, at_bucket .. ':failed', 1)
      redis.call('HINCRBY', skey, 'msg_failed:' .. tostring(code or 'unknown'), 1)
      -- the contact did not get the start's first message: failed, not started (the counts
      -- still add up); a later message failing leaves it started
      local ckey = string.format(ARGV[8], msg.start)
      if msg.opening and redis.call('HGET', ckey, ARGV[5]) == 'started' then
        local text = state.error and (state.error.message or state.error.title)
        local why = tostring(code or 'unknown')
        if type(text) == 'string' and text ~= '' then why = why .. ':' .. text end
        redis.call('HSET', ckey, ARGV[5], 'failed:' .. why)
        redis.call('HINCRBY', skey, 'started', -1)
        redis.call('HINCRBY', skey, 'failed', 1)
      end
    else
      local names = {'sent', 'delivered', 'read', 'played'}
      for r = (rank[current] or 0) + 1, rank[result] do
        redis.call('HINCRBY', skey, 'msg_' .. names[r], 1)
        if r <= 3 then redis.call('HINCRBY', bkey, at_bucket .. ':' .. names[r], 1) end
      end
    end
  end
end
if result == 'failed' then
  local msg = cjson.decode(redis.call('HGET', KEYS[1], id))
  local code = state.error and state.error.code or cjson.null
  local event = cjson.encode({type = 'fail', run = msg.run, node = msg.node, code = code,
                              channel = msg.channel, at = at})
  redis.call('RPUSH', KEYS[2], event)
  redis.call('XADD', KEYS[3], '*', 'c', ARGV[5])
end
return result
