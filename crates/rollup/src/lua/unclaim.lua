-- A processor gives its claim back unused (the replicas it would read are behind their peers):
-- the hours stay dirty and are claimable at once, not only when the claim runs out. An hour a
-- later claim took over is left to it. Returns how many were given back.
-- ARGV: v, hour...
local v = ARGV[1]
local given = 0
for i = 2, #ARGV do
  local h = ARGV[i]
  if redis.call('HGET', KEYS[8], h) == v then
    redis.call('ZREM', KEYS[6], h)
    redis.call('HDEL', KEYS[8], h)
    given = given + 1
  end
end
return given
