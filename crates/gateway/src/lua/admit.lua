-- One request's admission, atomically: resolve the key, check credits, apply the rate limit,
-- reserve the cost.
--
-- KEYS[1] {prefix}secret:{sha256}   secret hash -> key id (TTL while an old secret is in grace)
-- KEYS[2] {prefix}key:{sha256}      a key created before key management (moved on first use)
-- ARGV[1] prefix   ARGV[2] cost   ARGV[3] default requests   ARGV[4] default per_seconds
-- ARGV[5] sha256 of the presented secret   ARGV[6] lease id   ARGV[7] lease ms
-- ARGV[8] endpoint
--
-- An admitted request's charge is held by a lease until its gateway settles it (outbox.lua's
-- `close_lease`: answered, or refunded): `{prefix}lease:{id}` (key id, cost, endpoint,
-- admission time) and its deadline in the sorted set `{prefix}leases`; the key record's
-- `leased` counts its open charges. A lease still open after its deadline (the gateway died or
-- lost Redis) is refunded by any gateway's sweep (sweep.lua).
--
-- Returns {status, credits, limit, remaining, reset_s, retry_after_s, id}:
--   0 admitted (credits left after the charge), -1 unknown, -2 not enough credits,
--   -3 revoked, -4 expired, -5 rate limited.
--
-- Rate limit: GCRA (generic cell rate algorithm). A key may send `requests` per `per_seconds`:
-- one request every T = period / requests, with bursts of up to `requests`. The only state is
-- the theoretical arrival time `rl_tat_ms`. Credits are checked before the rate limit and the
-- state is written only when the request is admitted, so a 402 spends no rate-limit budget
-- and a 429 spends no credits.
local id = redis.call('GET', KEYS[1])
if not id then
  local legacy = redis.call('HMGET', KEYS[2], 'id', 'name', 'credits', 'created_at')
  if not legacy[1] or not legacy[3] then return {-1, 0, 0, 0, 0, 0, ''} end
  id = legacy[1]
  redis.call('HSET', ARGV[1] .. 'keyid:' .. id, 'id', id, 'name', legacy[2] or '',
    'credits', legacy[3], 'created_at', legacy[4] or '', 'secret', ARGV[5])
  redis.call('SET', KEYS[1], id)
  redis.call('SADD', ARGV[1] .. 'keys', id)
  redis.call('DEL', KEYS[2])
end

local record = ARGV[1] .. 'keyid:' .. id
local f = redis.call('HMGET', record, 'credits', 'revoked_at', 'expires_at_ms',
  'rate_requests', 'rate_per_seconds', 'rl_tat_ms')
if not f[1] then return {-1, 0, 0, 0, 0, 0, ''} end
if f[2] then return {-3, 0, 0, 0, 0, 0, id} end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000
if f[3] and now >= tonumber(f[3]) then return {-4, 0, 0, 0, 0, 0, id} end

local credits = tonumber(f[1])
local cost = tonumber(ARGV[2])
if credits < cost then return {-2, credits, 0, 0, 0, 0, id} end

local requests = tonumber(f[4] or ARGV[3])
local period = tonumber(f[5] or ARGV[4]) * 1000
local interval = period / requests
local tat = math.max(tonumber(f[6] or '0'), now)
local new_tat = tat + interval
local allow_at = new_tat - period
if now < allow_at then
  return {-5, credits, requests, 0, math.ceil((tat - now) / 1000),
    math.max(1, math.ceil((allow_at - now) / 1000)), id}
end

redis.call('HSET', record, 'rl_tat_ms', string.format('%.3f', new_tat))
local left = redis.call('HINCRBY', record, 'credits', -cost)
redis.call('HINCRBY', record, 'leased', cost)
redis.call('HSET', ARGV[1] .. 'lease:' .. ARGV[6], 'key_id', id, 'cost', cost,
  'endpoint', ARGV[8], 'admitted_ms', string.format('%.0f', now))
redis.call('ZADD', ARGV[1] .. 'leases', string.format('%.0f', now + tonumber(ARGV[7])), ARGV[6])
local remaining = math.floor((period - (new_tat - now)) / interval + 1e-9)
return {0, left, requests, remaining, math.ceil((new_tat - now) / 1000), 0, id}
