-- Refunds the charges whose lease deadline passed unsettled: the gateway that admitted them
-- died, or lost Redis, before it could settle. At most ARGV[2] leases per call, oldest
-- deadline first. ARGV[1] prefix. Returns how many were refunded.
local expired = redis.call('ZRANGEBYSCORE', ARGV[1] .. 'leases', '-inf', now_ms(),
  'LIMIT', 0, tonumber(ARGV[2]))
local refunded = 0
for _, lease_id in ipairs(expired) do
  if close_lease(ARGV[1], lease_id, 0, nil, true) ~= nil then refunded = refunded + 1 end
end
return refunded
