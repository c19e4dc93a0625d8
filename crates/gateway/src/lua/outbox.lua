-- Prepended to every script that moves credits (see `credits.rs`): the movement and its
-- usage-ledger event happen in one script, so the ledger's outbox holds an event exactly when
-- a balance moved. The outbox is the stream `{prefix}ledger:outbox`; the gateways drain it
-- into ClickHouse (`ledger.rs`), the entry id being the event id and its first part (Redis
-- TIME, ms) the event's time.
--
-- An event's fields, decoded in one place (`ledger::LedgerEvent::from_entry`): key_id, status
-- (granted | charged | refunded), amount, endpoint, http_status, latency_ms.
local function ledger_event(prefix, key_id, status, amount, endpoint, http_status, latency_ms)
  redis.call('XADD', prefix .. 'ledger:outbox', '*', 'key_id', key_id, 'status', status,
    'amount', amount, 'endpoint', endpoint, 'http_status', http_status,
    'latency_ms', latency_ms)
end

local function now_ms()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end

-- Closes the lease `lease_id` (see admit.lua): the charge it holds is recorded as `charged`
-- with the answer's HTTP status; with `refund` the cost goes back to the key and a `refunded`
-- event follows. `latency_ms` nil: the time since admission (a lease swept after its
-- deadline). Returns nil if the lease was closed already (settled, refunded or swept: each
-- charge is closed once), else the key's balance after it (-1 if the key record is gone).
local function close_lease(prefix, lease_id, http_status, latency_ms, refund)
  local lease = prefix .. 'lease:' .. lease_id
  local f = redis.call('HMGET', lease, 'key_id', 'cost', 'endpoint', 'admitted_ms')
  redis.call('ZREM', prefix .. 'leases', lease_id)
  if not f[1] then return nil end
  redis.call('DEL', lease)
  local cost = tonumber(f[2])
  if latency_ms == nil then
    latency_ms = math.max(0, now_ms() - tonumber(f[4]))
  end
  ledger_event(prefix, f[1], 'charged', cost, f[3], http_status, latency_ms)
  local record = prefix .. 'keyid:' .. f[1]
  local balance = -1
  if redis.call('EXISTS', record) == 1 then
    redis.call('HINCRBY', record, 'leased', -cost)
    if refund then
      balance = redis.call('HINCRBY', record, 'credits', cost)
    else
      balance = tonumber(redis.call('HGET', record, 'credits'))
    end
  end
  if refund then
    ledger_event(prefix, f[1], 'refunded', cost, f[3], http_status, latency_ms)
  end
  return balance
end

