-- Gives `ARGV[1]` credits back to the key record KEYS[1], once per refund id: KEYS[2] marks the
-- refund as done (kept `ARGV[2]` seconds), so a refund retried after an unclear failure (the
-- reply lost, not the command) never pays twice. Returns the new balance, -1 if the key was
-- deleted meanwhile, -2 if this refund was made already.
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[2]) then return -2 end
return redis.call('HINCRBY', KEYS[1], 'credits', ARGV[1])
