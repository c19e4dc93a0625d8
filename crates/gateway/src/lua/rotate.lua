-- Gives key record KEYS[1] a new secret (hash ARGV[2], lookup KEYS[2]); the old secret's
-- lookup expires after ARGV[3] seconds (0: at once). Both lookups name the same record, so
-- both secrets draw from one balance. ARGV[1] prefix, ARGV[4] key id, ARGV[5] rotated_at.
-- Returns 0 rotated, -1 unknown key, -2 revoked key.
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('HEXISTS', KEYS[1], 'revoked_at') == 1 then return -2 end
local old = redis.call('HGET', KEYS[1], 'secret')
if old then
  local lookup = ARGV[1] .. 'secret:' .. old
  if tonumber(ARGV[3]) > 0 then
    redis.call('EXPIRE', lookup, ARGV[3])
  else
    redis.call('DEL', lookup)
  end
end
redis.call('SET', KEYS[2], ARGV[4])
redis.call('HSET', KEYS[1], 'secret', ARGV[2], 'rotated_at', ARGV[5])
return 0
