-- Adds ARGV[1] credits to the key record KEYS[1]. Returns {0, balance}, {-1, 0} for an
-- unknown key, {-2, balance} when the balance would pass 2^53 - 1 (exact in Lua and JSON).
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, 0} end
local credits = tonumber(redis.call('HGET', KEYS[1], 'credits'))
if credits + tonumber(ARGV[1]) > 9007199254740991 then return {-2, credits} end
return {0, redis.call('HINCRBY', KEYS[1], 'credits', ARGV[1])}
