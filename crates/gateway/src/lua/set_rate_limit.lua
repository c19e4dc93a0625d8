-- Sets the rate limit of key record KEYS[1] to ARGV[1] requests per ARGV[2] seconds and
-- starts its budget afresh. Returns 0, or -1 for an unknown key.
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
redis.call('HSET', KEYS[1], 'rate_requests', ARGV[1], 'rate_per_seconds', ARGV[2])
redis.call('HDEL', KEYS[1], 'rl_tat_ms')
return 0
