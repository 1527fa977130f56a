-- A shared send rate (GCRA) per key, e.g. one per WhatsApp phone number, for every process.
-- KEYS: bucket   ARGV: seconds per message, burst (messages that may go at once)
-- Returns "0" when the message may go now, else the seconds to wait (as a string).
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
local wait = new_tat - now - interval * burst
if wait > 0 then return tostring(wait) end
redis.call('SET', KEYS[1], string.format('%.6f', new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1000)
return '0'
