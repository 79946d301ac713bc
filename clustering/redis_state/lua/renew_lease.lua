-- Extends the writer lease if this worker still holds it. KEYS: 1 lease. ARGV: token, ttl in ms.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
