-- Included (--!include status, bot/store/scripts.py), not called: apply_status(...) applies a
-- delivery status to a message, monotonically: queued < sent < delivered < read < played;
-- failed is final, and a late failed after delivered is ignored. Statuses arrive in any order.
-- The state lives beside the message, in the contact's msgs hash under "<uuid>:s" (flat JSON).
-- msgs, queue, ready: keys; id: message uuid; incoming: the status; at: when; err: error json
-- ('' if none); cid: contact uuid; extra: state json to merge ('' if none); start_hash,
-- start_contacts, start_buckets: start key patterns (%s = start uuid; '' or nil: none).
-- Returns the status now stored, or 'ignored' / 'unknown'.
-- A start's outcome buckets: one a minute in its first day, then one an hour (docs/redis.md).
local function status_bucket(skey, when)
  local since = tonumber(redis.call('HGET', skey, 'created_on')) or when
  local width = (when - since < 86400) and 60 or 3600
  return string.format('%d', math.floor(when / width) * width)
end
local status_rank = {queued = 0, accepted = 0, sent = 1, delivered = 2, read = 3, played = 4}
local function apply_status(msgs, queue, ready, id, incoming, at, err, cid, extra,
                            start_hash, start_contacts, start_buckets)
  local rank = status_rank
  if redis.call('HEXISTS', msgs, id) == 0 then return 'unknown' end
  local raw = redis.call('HGET', msgs, id .. ':s')
  local state = raw and cjson.decode(raw) or {status = 'queued'}
  if extra ~= '' then
    for k, v in pairs(cjson.decode(extra)) do state[k] = v end
  end
  local current = state.status
  local result = 'ignored'
  if current ~= 'failed' then
    if incoming == 'failed' then
      if (rank[current] or 0) <= rank.sent then
        state.status = 'failed'
        state.failed_on = at
        if err ~= '' then state.error = cjson.decode(err) end
        result = 'failed'
      end
    elseif rank[incoming] and rank[incoming] > (rank[current] or -1) then
      state.status = incoming
      result = incoming
    end
    if rank[incoming] and state[incoming .. '_on'] == nil then state[incoming .. '_on'] = at end
  end
  redis.call('HSET', msgs, id .. ':s', cjson.encode(state))
  -- a message a start caused: the start's outcome counters move with it (each rank reached once)
  if result ~= 'ignored' and result ~= 'queued' and start_hash and start_hash ~= '' then
    local msg = cjson.decode(redis.call('HGET', msgs, id))
    if type(msg.start) == 'string' then
      local skey = string.format(start_hash, msg.start)
      if msg.opening and current == 'queued' then  -- the contact's first message has its outcome
        redis.call('HINCRBY', skey, 'opened', 1)
      end
      local bkey, at_bucket = string.format(start_buckets, msg.start), status_bucket(skey, at)
      if result == 'failed' then
        local code = state.error and state.error.code
        redis.call('HINCRBY', skey, 'msg_failed', 1)
        redis.call('HINCRBY', bkey, at_bucket .. ':failed', 1)
        redis.call('HINCRBY', skey, 'msg_failed:' .. tostring(code or 'unknown'), 1)
        -- the contact did not get the start's first message: failed, not started (the counts
        -- still add up); a later message failing leaves it started
        local ckey = string.format(start_contacts, msg.start)
        if msg.opening and redis.call('HGET', ckey, cid) == 'started' then
          local text = state.error and (state.error.message or state.error.title)
          local why = tostring(code or 'unknown')
          if type(text) == 'string' and text ~= '' then why = why .. ':' .. text end
          redis.call('HSET', ckey, cid, 'failed:' .. why)
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
    local msg = cjson.decode(redis.call('HGET', msgs, id))
    local code = state.error and state.error.code or cjson.null
    local event = cjson.encode({type = 'fail', run = msg.run, node = msg.node, code = code,
                                channel = msg.channel, at = at})
    redis.call('RPUSH', queue, event)
    redis.call('XADD', ready, '*', 'c', cid)
  end
  return result
end
