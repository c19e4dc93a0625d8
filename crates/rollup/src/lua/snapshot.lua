-- What a reader needs, at one moment: how many clears ever emptied hours, then the dirty hours
-- from `first` to `last`. Reading it again after the rollup answered tells whether an hour the
-- answer took from the rollup changed meanwhile (dirty.rs `Snapshot`).
-- ARGV: first, last
local reply = {tonumber(redis.call('GET', KEYS[9]) or '0')}
for _, h in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[1], ARGV[2])) do
  reply[#reply + 1] = tonumber(h)
end
return reply
