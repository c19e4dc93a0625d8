-- Sets the balance of key record KEYS[1] from its ledger balance ARGV[1] (a rebuild): the
-- charges its open leases hold are not in the ledger yet, so they are taken off.
-- Returns {0, previous balance, new balance}, {-1, 0, 0} for an unknown key, or
-- {-2, previous balance, leased} when its open leases exceed the ledger balance.
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, 0, 0} end
local previous = tonumber(redis.call('HGET', KEYS[1], 'credits') or '0')
local leased = tonumber(redis.call('HGET', KEYS[1], 'leased') or '0')
local balance = tonumber(ARGV[1]) - leased
if balance < 0 then return {-2, previous, leased} end
redis.call('HSET', KEYS[1], 'credits', balance)
return {0, previous, balance}
