-- Closes one admitted request's lease (outbox.lua's `close_lease`): the answer was given
-- (ARGV[5] '0') or failed and is refunded (ARGV[5] '1').
-- ARGV[1] prefix, ARGV[2] lease id, ARGV[3] HTTP status, ARGV[4] latency in ms.
-- Returns {0, balance} closed now, {-1, 0} closed before (settled, refunded or swept).
local balance = close_lease(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5] == '1')
if balance == nil then return {-1, 0} end
return {0, balance}
