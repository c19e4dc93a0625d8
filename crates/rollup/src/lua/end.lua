-- A batch's insert was acknowledged: its hours get a mark later than every version drawn so far,
-- and its leases end. Returns the mark.
-- ARGV: now_ms, batch id, hour...
local mark = redis.call('INCR', KEYS[1])
for i = 3, #ARGV do
  local h = ARGV[i]
  dirty(h, ARGV[1])
  redis.call('HSET', KEYS[3], h, mark)
  if redis.call('ZREM', KEYS[4], h .. ':' .. ARGV[2]) == 1 then
    release(h)
  end
end
return mark
