-- Creates a key: its record KEYS[1] (field/value pairs from ARGV[5] on), its secret's lookup
-- KEYS[2] -> id, its place in the key set, and the `granted` event of its starting credits
-- (even 0, so every key's ledger has a grant). ARGV[1] prefix, ARGV[2] id, ARGV[3] credits,
-- ARGV[4] endpoint. Returns 0.
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('SET', KEYS[2], ARGV[2])
redis.call('SADD', ARGV[1] .. 'keys', ARGV[2])
ledger_event(ARGV[1], ARGV[2], 'granted', ARGV[3], ARGV[4], 201, 0)
return 0
