-- Gives `ARGV[1]` credits back to the key record KEYS[1], unless it was deleted meanwhile.
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
return redis.call('HINCRBY', KEYS[1], 'credits', ARGV[1])
