-- Apply a delivery status to a message (a provider's status webhook), monotonically: the logic
-- is lua/status.lua's, shared with record_sends.lua.
-- KEYS: msgs, queue, ready
-- ARGV: message uuid, status, at, error json ('' if none), contact uuid, extra state json ('' if none),
--       start hash pattern, start contacts hash pattern, start outcome buckets pattern
--       (%s = start uuid; '' or absent: none)
-- Returns the status now stored, or 'ignored' / 'unknown'.
--!include status
return apply_status(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4],
                    ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9])
