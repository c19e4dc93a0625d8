-- A batch is about to be inserted: its hours are dirty and leased until `end` or the deadline.
-- ARGV: now_ms, deadline_ms, batch id, hour...
local now_ms, deadline_ms, batch = ARGV[1], ARGV[2], ARGV[3]
for i = 4, #ARGV do
  local h = ARGV[i]
  dirty(h, now_ms)
  if redis.call('ZADD', KEYS[4], deadline_ms, h .. ':' .. batch) == 1 then
    redis.call('HINCRBY', KEYS[5], h, 1)
  end
end
return #ARGV - 3
