-- Write everything one sprint decided, atomically, only if we still hold the contact's lock.
-- KEYS: 1 lock, 2 queue, 3 contact, 4 session, 5 runs, 6 msgs, 7 history, 8 outbox,
--       9 timers, 10 ready, 11 sendq, 12.. one key per ended run (in ARGV order)
-- ARGV: 1 token, 2 events consumed, 3 contact json ('' = unchanged), 4 session json ('' = unchanged),
--       5 contact uuid, 6 run index key pattern (flow, state), 7 flow stats key pattern (flow),
--       8 the set of flows with runs, 9 n new runs, (uuid, flow, index member)...,
--       n ended runs, (json, flow, status, index member)...,
--       n messages, (uuid, json, outbox '1'|'0')..., n timers to drop, members...,
--       n timers to add, (member, due)..., n group changes, then when n > 0: groups index key,
--       group id counter key, group key pattern, members key pattern, now, (name, '1' add |
--       '0' remove)..., n counter changes, (flow, field, delta)...,
--       messages kept, runs kept, run key pattern (%s = run uuid), start hash pattern, start
--       contacts hash pattern, start outcome buckets pattern (%s = start uuid), search index
--       key, n members to remove..., n members to add..., starts index key, start seen set
--       pattern, n runs a trigger began, (day record uuid, flow, day, created_on)...; a
--       message's outbox flag is 's' for a message of a start refused here (not sent, counted
--       for the start); then the send lock key and the ms to take it for inline ('0': never)
-- Returns the events left queued, or {left, 1} when it took the send line inline.
-- The group, run index and flow stats keys are global (cross-slot: single instance,
-- docs/redis.md).
--!include lock
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  -- we lost the lock (it expired): write nothing, but make sure the queued events still have
  -- a signal -- our caller acknowledges its own
  if redis.call('LLEN', KEYS[2]) > 0 then redis.call('XADD', KEYS[10], '*', 'c', ARGV[5]) end
  return -1
end
local index, stats = ARGV[6], ARGV[7]
local i = 9
local function take()
  local v = ARGV[i]; i = i + 1; return v
end
local consumed = tonumber(ARGV[2])
if consumed > 0 then redis.call('LTRIM', KEYS[2], consumed, -1) end
if ARGV[3] ~= '' then redis.call('SET', KEYS[3], ARGV[3]) end
if ARGV[4] ~= '' then redis.call('SET', KEYS[4], ARGV[4]) end
for _ = 1, tonumber(take()) do
  local id, flow, member = take(), take(), take()
  redis.call('LPUSH', KEYS[5], id)
  redis.call('ZADD', string.format(index, flow, 'open'), 0, member)
  redis.call('SADD', ARGV[8], flow)
end
for k = 1, tonumber(take()) do
  local json, flow, status, member = take(), take(), take(), take()
  redis.call('SET', KEYS[11 + k], json)
  redis.call('ZREM', string.format(index, flow, 'open'), member)
  redis.call('ZADD', string.format(index, flow, status), 0, member)
end
local outboxed = 0
local refused = {}  -- messages of a start refused here: they count for the start (at the end)
for _ = 1, tonumber(take()) do
  local id, json, out = take(), take(), take()
  redis.call('HSET', KEYS[6], id, json)
  redis.call('RPUSH', KEYS[7], id)
  if out == '1' then redis.call('RPUSH', KEYS[8], id); outboxed = outboxed + 1 end
  if out == 's' then refused[#refused + 1] = cjson.decode(json) end
end
for _ = 1, tonumber(take()) do redis.call('ZREM', KEYS[9], take()) end
for _ = 1, tonumber(take()) do
  local member, due = take(), take()
  redis.call('ZADD', KEYS[9], due, member)
end
local n_groups = tonumber(take() or '0')
if n_groups > 0 then
  local index, seq, meta, members, now = take(), take(), take(), take(), take()
  for _ = 1, n_groups do
    local name, add = take(), take()
    local id = redis.call('HGET', index, name)
    if add == '1' then
      if not id then
        id = tostring(redis.call('INCR', seq))
        redis.call('HSET', index, name, id)
        redis.call('HSET', string.format(meta, id), 'name', name, 'created_on', now)
      end
      redis.call('SADD', string.format(members, id), ARGV[5])
    elseif id then
      redis.call('SREM', string.format(members, id), ARGV[5])
    end
  end
end
for _ = 1, tonumber(take()) do
  local flow, field, delta = take(), take(), take()
  redis.call('HINCRBY', string.format(stats, flow), field, delta)
end
-- bounded history: drop the oldest messages (never one still waiting to be sent) and runs
local keep_msgs, keep_runs, run_pattern = tonumber(take()), tonumber(take()), take()
-- as apply_status.lua counts a failure reported by a channel: the start's message counters,
-- and a contact whose opening message this was is failed, not started
local start_hash, start_contacts, start_buckets = take(), take(), take()
local search = take()
for _ = 1, tonumber(take()) do redis.call('ZREM', search, take()) end
for _ = 1, tonumber(take()) do redis.call('ZADD', search, 0, take()) end
-- a run a contact's message triggered counts in its flow's record of the day in the starts
-- history (made by the first): the contact once as targeted and started; started again if its
-- last triggered run's first message had failed. Before the refusals below, which count on it.
local starts_index, start_seen = take(), take()
for _ = 1, tonumber(take() or '0') do
  local sid, flow, day, at = take(), take(), take(), take()
  local skey = string.format(start_hash, sid)
  if redis.call('EXISTS', skey) == 0 then
    redis.call('HSET', skey, 'uuid', sid, 'flow', flow, 'status', 'completed', 'kind', 'trigger',
      'day', day, 'params', '{}', 'groups', '[]', 'restart_participants', '1',
      'exclude_active', '0', 'created_on', at, 'completed_on', at)
    redis.call('ZADD', starts_index, at, sid)
  end
  local ckey = string.format(start_contacts, sid)
  if redis.call('SADD', string.format(start_seen, sid), ARGV[5]) == 1 then
    redis.call('HINCRBY', skey, 'targeted', 1)
    redis.call('HINCRBY', skey, 'started', 1)
    redis.call('HSET', ckey, ARGV[5], 'started')
  elseif string.sub(redis.call('HGET', ckey, ARGV[5]) or '', 1, 7) == 'failed:' then
    redis.call('HINCRBY', skey, 'failed', -1)
    redis.call('HINCRBY', skey, 'started', 1)
    redis.call('HSET', ckey, ARGV[5], 'started')
  end
  redis.call('HINCRBY', skey, 'runs', 1)
end
for _, msg in ipairs(refused) do
  local skey, code = string.format(start_hash, msg.start), tostring(msg.error.code)
  redis.call('HINCRBY', skey, 'msg_failed', 1)
  -- its outcome bucket, as apply_status.lua makes it (a minute in the start's first day, else an hour)
  local when = tonumber(msg.created_on) or 0
  local since = tonumber(redis.call('HGET', skey, 'created_on')) or when
  local width = (when - since < 86400) and 60 or 3600
  local b = string.format('%d', math.floor(when / width) * width)
  redis.call('HINCRBY', string.format(start_buckets, msg.start), b .. ':failed', 1)
  redis.call('HINCRBY', skey, 'msg_failed:' .. code, 1)
  if msg.opening then redis.call('HINCRBY', skey, 'opened', 1) end
  local ckey = string.format(start_contacts, msg.start)
  if msg.opening and redis.call('HGET', ckey, ARGV[5]) == 'started' then
    redis.call('HSET', ckey, ARGV[5], 'failed:' .. code)
    redis.call('HINCRBY', skey, 'started', -1)
    redis.call('HINCRBY', skey, 'failed', 1)
  end
end
local excess = redis.call('LLEN', KEYS[7]) - keep_msgs
if excess > 0 then
  for _, id in ipairs(redis.call('LRANGE', KEYS[7], 0, excess - 1)) do
    if not redis.call('LPOS', KEYS[8], id) then redis.call('HDEL', KEYS[6], id, id .. ':s') end
  end
  redis.call('LTRIM', KEYS[7], excess, -1)
end
if redis.call('LLEN', KEYS[5]) > keep_runs then
  for _, id in ipairs(redis.call('LRANGE', KEYS[5], keep_runs, -1)) do
    local key = string.format(run_pattern, id)
    local raw = redis.call('GET', key)
    if raw then  -- out of its flow's index too (the member as bot/store/keys.py run_member makes it)
      local run = cjson.decode(raw)
      local member = string.format('%017.3f|%s|%s', math.max(tonumber(run.created_on) or 0, 0),
        ARGV[5], id)
      redis.call('ZREM', string.format(index, run.flow, run.status), member)
      redis.call('DEL', key)
    end
  end
  redis.call('LTRIM', KEYS[5], 0, keep_runs - 1)
end
redis.call('DEL', KEYS[1])
local remaining = redis.call('LLEN', KEYS[2])
if remaining > 0 then redis.call('XADD', KEYS[10], '*', 'c', ARGV[5]) end
-- inline send (bot/work/sender.py): when the outbox held nothing before this commit and the send
-- lock is free, the line is taken here with our token and the caller sends at once -- no send
-- signal. A "send" timer due when that lock expires signals the line should the caller die.
local sendlock, inline_ttl = take(), tonumber(take() or '0') or 0
if outboxed > 0 then
  if inline_ttl > 0 and redis.call('LLEN', KEYS[8]) == outboxed
      and take_covered(sendlock, ARGV[1], inline_ttl, KEYS[9], ARGV[5] .. '|send|' .. ARGV[1]) then
    return {remaining, 1}
  end
  redis.call('XADD', KEYS[11], '*', 'c', ARGV[5])
end
return remaining
