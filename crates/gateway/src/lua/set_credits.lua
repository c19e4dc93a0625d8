-- Sets the balance of key record KEYS[1] to ARGV[1] (a rebuild from the ledger). Returns
-- {0, previous balance}, or {-1, 0} for an unknown key.
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, 0} end
local previous = tonumber(redis.call('HGET', KEYS[1], 'credits') or '0')
redis.call('HSET', KEYS[1], 'credits', ARGV[1])
return {0, previous}
