-- How far behind the processing is: {dirty hours, the earliest moment one became dirty (ms),
-- or 0}.
local oldest = 0
for _, since in ipairs(redis.call('HVALS', KEYS[7])) do
  local ms = tonumber(since)
  if oldest == 0 or ms < oldest then oldest = ms end
end
return {redis.call('ZCARD', KEYS[2]), oldest}
