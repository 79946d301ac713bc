-- Applies one face's clustering delta atomically, at most once, in label order.
-- KEYS: 1 faces (face id -> label), 2 meta, 3 embeddings, 4 neighbours, 5 parents, 6 clusters, 7 offsets,
--       8 count (faces applied), 9 outbox (events not yet published), 10 writer lease
-- ARGV: face_id, label, meta, embedding, n_neighbours, (label, packed)*, n_parents, (label, parent)*,
--       n_clusters, (root, summary or "" to delete)*, partition ("" for none), offset,
--       outbox entry ("" for none), writer token ("" when no lease is held)
local token = ARGV[#ARGV]
if token ~= '' and redis.call('GET', KEYS[10]) ~= token then
  return redis.error_reply('FACESTREAM_LEASE this worker no longer holds the writer lease of its identity space')
end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  return 0
end
local count = tonumber(redis.call('GET', KEYS[8]) or '0')
if tonumber(ARGV[2]) ~= count then
  return redis.error_reply('FACESTREAM face ' .. ARGV[1] .. ' has label ' .. ARGV[2] .. ' but the store holds '
    .. count .. ' faces: another writer is active on this identity space')
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('HSET', KEYS[3], ARGV[2], ARGV[4])
local i = 5
local n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 1]); i = i + 2
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('HSET', KEYS[5], ARGV[i], ARGV[i + 1]); i = i + 2
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', KEYS[6], ARGV[i])
  else
    redis.call('HSET', KEYS[6], ARGV[i], ARGV[i + 1])
  end
  i = i + 2
end
if ARGV[i] ~= '' then
  redis.call('HSET', KEYS[7], ARGV[i], ARGV[i + 1])
end
if ARGV[i + 2] ~= '' then
  redis.call('RPUSH', KEYS[9], ARGV[i + 2])
end
redis.call('SET', KEYS[8], count + 1)
return 1
