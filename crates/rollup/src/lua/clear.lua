-- Version `v` of these hours is published: each leaves the dirty set unless a batch holds a
-- lease on it, was acknowledged after `v` was drawn (its mark is greater), or a later claim
-- took the hour over (a processor that outlived its claim: the newer claimant clears it once
-- its own version is published, so a clean hour never has rows above its published version).
-- Returns how many left.
-- ARGV: v, hour...
local v = tonumber(ARGV[1])
local cleared = 0
for i = 2, #ARGV do
  local h = ARGV[i]
  local claimant = tonumber(redis.call('HGET', KEYS[8], h) or '0')
  if claimant <= v then
    redis.call('ZREM', KEYS[6], h)
    redis.call('HDEL', KEYS[8], h)
  end
  local mark = tonumber(redis.call('HGET', KEYS[3], h) or '0')
  if claimant <= v and redis.call('HEXISTS', KEYS[5], h) == 0 and mark < v then
    redis.call('ZREM', KEYS[2], h)
    redis.call('HDEL', KEYS[3], h)
    redis.call('HDEL', KEYS[7], h)
    cleared = cleared + 1
  end
end
if cleared > 0 then
  redis.call('INCR', KEYS[9])
end
return cleared
