-- Marks key record KEYS[1] revoked at ARGV[1] (the first revocation time is kept). Every
-- secret of the key is refused from now on. Returns 0, or -1 for an unknown key.
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
redis.call('HSETNX', KEYS[1], 'revoked_at', ARGV[1])
return 0
