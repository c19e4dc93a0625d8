-- Shared by every dirty-hours script. KEYS, always in this order (dirty.rs `Keys`):
-- 1 seq, 2 dirty, 3 marks, 4 pending, 5 pending_count, 6 claims, 7 since, 8 claimed_by,
-- 9 clears.

-- One lease on hour `h` ended (its batch finished or its lease expired).
local function release(h)
  if redis.call('HINCRBY', KEYS[5], h, -1) <= 0 then
    redis.call('HDEL', KEYS[5], h)
  end
end

-- Hour `h` is dirty from `now_ms` on (the first time only, for the lag metric).
local function dirty(h, now_ms)
  redis.call('ZADD', KEYS[2], h, h)
  redis.call('HSETNX', KEYS[7], h, now_ms)
end
