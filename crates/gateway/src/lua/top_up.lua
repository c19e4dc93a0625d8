-- Adds ARGV[1] credits to the key record KEYS[1] and records the `granted` event.
-- ARGV[2] prefix, ARGV[3] key id, ARGV[4] endpoint.
-- Returns {0, balance}, {-1, 0} for an unknown key, {-2, balance} when the balance would pass
-- 2^53 - 1 (exact in Lua and JSON).
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, 0} end
local credits = tonumber(redis.call('HGET', KEYS[1], 'credits'))
if credits + tonumber(ARGV[1]) > 9007199254740991 then return {-2, credits} end
local balance = redis.call('HINCRBY', KEYS[1], 'credits', ARGV[1])
ledger_event(ARGV[2], ARGV[3], 'granted', ARGV[1], ARGV[4], 200, 0)
return {0, balance}
