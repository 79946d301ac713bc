-- Records an event that changes no clustering state (a tracked face's assignment, a track's appearance)
-- atomically with its input offset, at most once per event id.
-- KEYS: 1 faces (ids applied), 2 offsets, 3 outbox, 4 writer lease
-- ARGV: event id, partition, offset, outbox entry, writer token ("" when no lease is held)
if ARGV[5] ~= '' and redis.call('GET', KEYS[4]) ~= ARGV[5] then
  return redis.error_reply('FACESTREAM_LEASE this worker no longer holds the writer lease of its identity space')
end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], -1)
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('RPUSH', KEYS[3], ARGV[4])
return 1
