-- Gives the writer lease back if this worker holds it. KEYS: 1 lease. ARGV: token.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
