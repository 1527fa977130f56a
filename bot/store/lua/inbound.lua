-- One webhook's messages in one call. For each message, in order: drop it if its external id
-- was seen within the channel's redelivery time (first: a redelivery creates nothing); find
-- the contact of its URN, creating it when new (as contact_for_urn.lua does, including a URN
-- index that outlived its record: the record is written again); queue its reply event, with
-- "new_contact": true when the contact was made for it.
-- Then, for each contact that got an event, in first-seen order: while claims are allowed (this
-- process has room) and the contact's lock is free, claim it here -- the fast lane: lock, its
-- events, contact and session are answered, and a timer "<uuid>|signal|<token>" due when the
-- lock expires re-signals the contact should this process die holding it (the commit removes
-- it). Otherwise signal the workers on the ready stream, as enqueue.lua does.
-- KEYS: contacts index, search index, ready, timers, then per message: seen key, urn key
-- ARGV: 1 contact key pattern (%s = uuid, %s = part), 2 claims allowed, 3 token prefix,
--       4 lock ttl ms, 5 max events per claim, then per message: redelivery ttl (s), proposed
--       uuid, contact json without its uuid ('{"name":...'), created_on index prefix, event
--       json ('{"type":...'), n search words, words...
-- Returns {outcomes, claims}: outcomes has per message its uuid and 0 (a redelivery), 1
-- (queued) or 2 (queued, contact created); a claim is {uuid, token, events, contact, session}.
--!include lock
local pattern = ARGV[1]
local allowed, prefix, ttl_ms, max_events = tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
local outcomes, order, seen = {}, {}, {}
local i = 6
for m = 0, (#KEYS - 4) / 2 - 1 do
  local seen_key, urn_key = KEYS[5 + 2 * m], KEYS[6 + 2 * m]
  local ttl, proposed, rest, created_on, event = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3],
    ARGV[i + 4]
  local n_words = tonumber(ARGV[i + 5])
  local words_at = i + 6
  i = words_at + n_words
  if not redis.call('SET', seen_key, '1', 'NX', 'EX', ttl) then
    outcomes[#outcomes + 1] = ''
    outcomes[#outcomes + 1] = 0
  else
    local cid = redis.call('GET', urn_key)
    local outcome = 1
    if not cid then
      cid, outcome = proposed, 2
      redis.call('SET', urn_key, cid)
    end
    local record = string.format(pattern, cid, 'contact')
    if outcome == 2 or redis.call('EXISTS', record) == 0 then
      -- new, or the index outlived its record: the record (under the indexed uuid) and its
      -- index entries; JSON put together as text (re-encoding here would turn [] into {})
      outcome = 2
      redis.call('SET', record, '{"uuid":"' .. cid .. '",' .. string.sub(rest, 2), 'NX')
      redis.call('ZADD', KEYS[1], 0, created_on .. '|' .. cid)
      for w = words_at, words_at + n_words - 1 do
        redis.call('ZADD', KEYS[2], 0, ARGV[w] .. ' ' .. cid)
      end
      event = '{"new_contact":true,' .. string.sub(event, 2)
    end
    redis.call('RPUSH', string.format(pattern, cid, 'q'), event)
    if not seen[cid] then
      seen[cid] = true
      order[#order + 1] = cid
    end
    outcomes[#outcomes + 1] = cid
    outcomes[#outcomes + 1] = outcome
  end
end
local claims = {}
for _, cid in ipairs(order) do
  local token = prefix .. '.' .. (#claims + 1)
  if #claims < allowed and take_covered(string.format(pattern, cid, 'lock'), token, ttl_ms,
                                        KEYS[4], cid .. '|signal|' .. token) then
    claims[#claims + 1] = {
      cid, token,
      redis.call('LRANGE', string.format(pattern, cid, 'q'), 0, tonumber(max_events) - 1),
      redis.call('GET', string.format(pattern, cid, 'contact')) or '',
      redis.call('GET', string.format(pattern, cid, 'session')) or '',
    }
  else
    redis.call('XADD', KEYS[3], '*', 'c', cid)
  end
end
return {outcomes, claims}
