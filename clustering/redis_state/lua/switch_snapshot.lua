-- Makes a fully written snapshot generation the current one, if this worker still holds the writer lease.
-- KEYS: 1 snapshot pointer (hash: generation, parts, count), 2 writer lease
-- ARGV: generation, parts, count (faces covered), writer token ("" when no lease is held)
-- Returns the generation it replaced and its parts ("" and 0 when none), for the caller to delete.
if ARGV[4] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[4] then
  return redis.error_reply('FACESTREAM_LEASE this worker no longer holds the writer lease of its identity space')
end
local current = redis.call('HMGET', KEYS[1], 'generation', 'parts', 'count')
if current[3] and tonumber(current[3]) >= tonumber(ARGV[3]) then
  return {ARGV[1], ARGV[2]}  -- a snapshot as recent is current already: drop this one
end
redis.call('HSET', KEYS[1], 'generation', ARGV[1], 'parts', ARGV[2], 'count', ARGV[3])
return {current[1] or '', current[2] or '0'}
