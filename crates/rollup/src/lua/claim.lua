-- A processor asks for work: expired leases end, a version is drawn (above `floor`, the greatest
-- version published, should `seq` have been lost), and up to `max` dirty hours with no lease and
-- no live claim are claimed, newest first. Returns {version, hour...}.
-- ARGV: now_ms, claim_deadline_ms, max, floor
local now_ms = tonumber(ARGV[1])
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now_ms)) do
  redis.call('ZREM', KEYS[4], member)
  release(string.match(member, '^(%d+):'))
end
if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[4]) then
  redis.call('SET', KEYS[1], ARGV[4])
end
local claimed = {redis.call('INCR', KEYS[1])}
local max = tonumber(ARGV[3])
local offset = 0
while #claimed <= max do
  local page = redis.call('ZREVRANGE', KEYS[2], offset, offset + 999)
  if #page == 0 then break end
  for _, h in ipairs(page) do
    if #claimed > max then break end
    local until_ms = tonumber(redis.call('ZSCORE', KEYS[6], h) or '0')
    if redis.call('HEXISTS', KEYS[5], h) == 0 and until_ms <= now_ms then
      redis.call('ZADD', KEYS[6], ARGV[2], h)
      redis.call('HSET', KEYS[8], h, claimed[1])
      claimed[#claimed + 1] = tonumber(h)
    end
  end
  offset = offset + 1000
end
return claimed
