-- Version `v` of these hours is published: each leaves the dirty set unless a batch holds a
-- lease on it or was acknowledged after `v` was drawn (its mark is greater). Returns how many
-- left.
-- ARGV: v, hour...
local v = tonumber(ARGV[1])
local cleared = 0
for i = 2, #ARGV do
  local h = ARGV[i]
  redis.call('ZREM', KEYS[6], h)
  local mark = tonumber(redis.call('HGET', KEYS[3], h) or '0')
  if redis.call('HEXISTS', KEYS[5], h) == 0 and mark < v then
    redis.call('ZREM', KEYS[2], h)
    redis.call('HDEL', KEYS[3], h)
    redis.call('HDEL', KEYS[7], h)
    cleared = cleared + 1
  end
end
return cleared
