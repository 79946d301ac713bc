-- Applies a batch of operations atomically, in order, each at most once: the faces' clustering deltas and the
-- events that change no clustering state (a tracked face's assignment, a track's appearance), each with its
-- input offset and its outbox entry. One round trip for a whole batch of the cluster worker.
-- KEYS: 1 faces (face or event id -> label, -1 for an event), 2 meta, 3 embeddings, 4 neighbours, 5 parents,
--       6 clusters, 7 offsets, 8 count (faces applied), 9 outbox (events not yet published), 10 writer lease,
--       11 links (the links of unions), 12 marks (correction marks of faces), 13 commands (applied corrections),
--       14 tombstones (SHA-1 of forgotten face ids -> label: a replayed record of one is not applied again),
--       15 sizes (cluster root -> score: size * 2^32 + 2^32 - 1 - root, the clusters largest and then oldest first)
--       16 thumbnails (face id -> picture, of the faces among some cluster's best ARGV[4] representatives only)
--       17 names (cluster root -> its name, for the named clusters only: what a search by name reads)
--       18 appearances (event id -> the appearance as the timeline keeps it, JSON with its timeline member)
--       19 timeline (members 'RRRRRRRRRR:TTTTTTTTTTTTT:<event id>', all of score 0: an identity's appearances are
--          the members with its root as prefix, newest first; T is 9999999999999 less the last time in ms)
--       20 appearance pictures (face id -> picture of an appearance's best face)
-- ARGV: writer token ("" when no lease is held), the face count the writer expects the store to hold ("" for
--   no check), number of operations, pictures kept per identity (of its best representatives), then per operation:
--   'F', face_id, label, meta, embedding, n_neighbours, (label, packed)*, n_parents, (label, parent)*,
--        n_links, (label, packed)*, n_clusters, (root, summary or "" to delete)*, partition ("" for none),
--        offset, outbox entry ("" for none), thumbnail ("" for none: given only when the face is a representative;
--        kept when it is among its identity's best ARGV[4])
--   'E', event id, partition, offset, outbox entry, appearance ("" for none: JSON with track, camera,
--        first_seen, last_seen, faces, ended, best_face and cap, the appearances its identity keeps), picture of
--        its best face ("")
--   'C', command id, value kept with the id, n_fields, (key number, field, value or "" to delete)*, partition, offset,
--        outbox entry: a correction
--   'O', partition, offset: every face of the space below offset + 1 on that partition is applied (a space
--        with no face in the batches that read it); the recorded offset only ever grows
-- Returns one 1 (applied) or 0 (seen before, nothing changed) per operation. Everything is checked before
-- anything is written: a lapsed lease, a store that holds another count of faces than the writer expects (Redis
-- lost acknowledged writes: the writer must rebuild) or a new face whose label is not the next one refuse the
-- whole batch, so no input offset moves past a face that was not applied.
local token = ARGV[1]
if token ~= '' and redis.call('GET', KEYS[10]) ~= token then
  return redis.error_reply('FACESTREAM_LEASE this worker no longer holds the writer lease of its identity space')
end
local count = tonumber(redis.call('GET', KEYS[8]) or '0')
local pictures_kept = tonumber(ARGV[4])
if ARGV[2] ~= '' and tonumber(ARGV[2]) ~= count then
  return redis.error_reply('FACESTREAM_COUNT the store holds ' .. count .. ' faces but its writer expects '
    .. ARGV[2] .. ': Redis lost acknowledged writes, or another writer is active on this identity space')
end
-- A cluster's summary set ("" deletes it), with its place in the sizes index. ``shown`` gathers, over one
-- operation, the faces that were representatives (false) and those among the best ARGV[4] now (true): a picture
-- is kept only of a face some cluster shows, so drop_unshown deletes the pictures of the faces the operation
-- took out of every summary's best.
-- ``touched`` gathers the roots the operation changed (true for one absorbed or deleted), whose appearances may
-- have to move to the identity their face is part of now.
local function set_cluster(root, summary, shown, touched)
  local old = redis.call('HGET', KEYS[6], root)
  if old then
    for _, rep in ipairs(cjson.decode(old).representatives) do
      if shown[rep[2]] == nil then shown[rep[2]] = false end
    end
  end
  touched[root] = summary == ''
  if summary == '' then
    redis.call('HDEL', KEYS[6], root)
    redis.call('ZREM', KEYS[15], root)
    redis.call('HDEL', KEYS[17], root)
  else
    redis.call('HSET', KEYS[6], root, summary)
    local decoded = cjson.decode(summary)
    if type(decoded.name) == 'string' then
      redis.call('HSET', KEYS[17], root, decoded.name)
    else
      redis.call('HDEL', KEYS[17], root)
    end
    for rank, rep in ipairs(decoded.representatives) do
      if rank <= pictures_kept then shown[rep[2]] = true end
    end
    local score = decoded.size * 4294967296 + (4294967295 - tonumber(root))
    redis.call('ZADD', KEYS[15], string.format('%.0f', score), root)
  end
end
-- The root of a face's cluster, by the parents as this operation left them.
local function find(label)
  local root = label
  for _ = 1, 10000 do  -- union-find paths are short; a bound against a corrupt cycle
    local parent = redis.call('HGET', KEYS[5], root)
    if not parent or parent == '' then return root end
    root = parent
  end
  return root
end
local function timeline_member(root, last, id)
  return string.format('%010d:%013d:%s', tonumber(root), 9999999999999 - math.floor(last * 1000), id)
end
local function timeline_range(root)
  return string.format('[%010d:', tonumber(root)), string.format('(%010d;', tonumber(root))
end
local function drop_appearance(member, id, appearance)
  redis.call('ZREM', KEYS[19], member)
  redis.call('HDEL', KEYS[18], id)
  if appearance then redis.call('HDEL', KEYS[20], appearance.best_face) end
end
-- An identity keeps its ``cap`` newest appearances.
local function trim(root, cap)
  local low, high = timeline_range(root)
  local extra = redis.call('ZLEXCOUNT', KEYS[19], low, high) - cap
  if extra <= 0 then return end
  for _, member in ipairs(redis.call('ZRANGEBYLEX', KEYS[19], low, high, 'LIMIT', cap, extra)) do
    local id = string.sub(member, 26)
    local raw = redis.call('HGET', KEYS[18], id)
    drop_appearance(member, id, raw and cjson.decode(raw))
  end
end
-- A track's appearance filed under the identity its best face is part of (none when that face is not applied).
local function file_appearance(id, raw, picture)
  local appearance = cjson.decode(raw)
  local label = redis.call('HGET', KEYS[1], appearance.best_face)
  if not label or tonumber(label) < 0 then return end
  local root = find(label)
  appearance.key = timeline_member(root, appearance.last_seen, id)
  redis.call('HSET', KEYS[18], id, cjson.encode(appearance))
  redis.call('ZADD', KEYS[19], 0, appearance.key)
  if picture ~= '' then redis.call('HSET', KEYS[20], appearance.best_face, picture) end
  trim(root, appearance.cap)
end
-- The appearances filed under ``root`` moved to the identity their best face is part of now, or dropped with a
-- forgotten face: after a merge absorbed the root, or a correction changed it.
local function rehome(root)
  local low, high = timeline_range(root)
  local targets = {}
  for _, member in ipairs(redis.call('ZRANGEBYLEX', KEYS[19], low, high)) do
    local id = string.sub(member, 26)
    local raw = redis.call('HGET', KEYS[18], id)
    local appearance = raw and cjson.decode(raw)
    local label = appearance and redis.call('HGET', KEYS[1], appearance.best_face)
    if not label then
      drop_appearance(member, id, appearance)
    else
      local now = find(label)
      if tonumber(now) ~= tonumber(root) then
        redis.call('ZREM', KEYS[19], member)
        appearance.key = timeline_member(now, appearance.last_seen, id)
        redis.call('ZADD', KEYS[19], 0, appearance.key)
        redis.call('HSET', KEYS[18], id, cjson.encode(appearance))
        targets[now] = appearance.cap
      end
    end
  end
  for target, cap in pairs(targets) do trim(target, cap) end
end
-- After an operation: ``all`` every touched root (a correction), else the absorbed ones only (a face's merges).
local function rehome_touched(touched, all)
  for root, absorbed in pairs(touched) do
    if all or absorbed then rehome(root) end
  end
end
local function drop_unshown(shown)
  for face, still in pairs(shown) do
    if not still then redis.call('HDEL', KEYS[16], face) end
  end
end
-- ARGV[i .. i + 2]: partition, offset ("" for none), outbox entry ("" for none).
local function record_input(i)
  if ARGV[i] ~= '' then redis.call('HSET', KEYS[7], ARGV[i], ARGV[i + 1]) end
  if ARGV[i + 2] ~= '' then redis.call('RPUSH', KEYS[9], ARGV[i + 2]) end
end

-- One pass over the operations: with write false it only checks (and returns an error reply or nil), with
-- write true it applies and returns the results.
local function walk(write)
  local results, seen, faces = {}, {}, count
  local i = 5
  for op = 1, tonumber(ARGV[3]) do
    local kind, id = ARGV[i], ARGV[i + 1]
    local fresh = kind ~= 'O' and not seen[kind .. id]
      and redis.call('HEXISTS', kind == 'C' and KEYS[13] or KEYS[1], id) == 0
    if fresh and kind == 'F' and redis.call('HEXISTS', KEYS[14], redis.sha1hex(id)) == 1 then fresh = false end
    if fresh and not write then seen[kind .. id] = true end
    if kind == 'C' then
      if fresh and write then redis.call('HSET', KEYS[13], id, ARGV[i + 2]) end
      local n, shown, touched = tonumber(ARGV[i + 3]), {}, {}; i = i + 4
      for _ = 1, n do
        if fresh and write then
          local key = KEYS[tonumber(ARGV[i])]
          if key == KEYS[6] then
            set_cluster(ARGV[i + 1], ARGV[i + 2], shown, touched)
          elseif ARGV[i + 2] == '' then
            redis.call('HDEL', key, ARGV[i + 1])
          else
            redis.call('HSET', key, ARGV[i + 1], ARGV[i + 2])
          end
        end
        i = i + 3
      end
      if fresh and write then
        record_input(i)
        drop_unshown(shown)
        rehome_touched(touched, true)
      end
      i = i + 3
    elseif kind == 'O' then
      if write then
        local applied = tonumber(redis.call('HGET', KEYS[7], id) or '-1')
        if tonumber(ARGV[i + 2]) > applied then redis.call('HSET', KEYS[7], id, ARGV[i + 2]) end
      end
      i = i + 3
    elseif kind == 'E' then
      if fresh and write then
        redis.call('HSET', KEYS[1], id, -1)
        redis.call('HSET', KEYS[7], ARGV[i + 2], ARGV[i + 3])
        redis.call('RPUSH', KEYS[9], ARGV[i + 4])
        if ARGV[i + 5] ~= '' then file_appearance(id, ARGV[i + 5], ARGV[i + 6]) end
      end
      i = i + 7
    else
      local label = ARGV[i + 2]
      if fresh and tonumber(label) ~= faces then
        return redis.error_reply('FACESTREAM face ' .. id .. ' has label ' .. label .. ' but the store holds '
          .. faces .. ' faces: another writer is active on this identity space')
      end
      if fresh and write then
        redis.call('HSET', KEYS[1], id, label)
        redis.call('HSET', KEYS[2], label, ARGV[i + 3])
        redis.call('HSET', KEYS[3], label, ARGV[i + 4])
      end
      i = i + 5
      for _, key in ipairs({KEYS[4], KEYS[5], KEYS[11]}) do
        local n = tonumber(ARGV[i]); i = i + 1
        for _ = 1, n do
          if fresh and write then redis.call('HSET', key, ARGV[i], ARGV[i + 1]) end
          i = i + 2
        end
      end
      local n, shown, touched = tonumber(ARGV[i]), {}, {}; i = i + 1
      for _ = 1, n do
        if fresh and write then set_cluster(ARGV[i], ARGV[i + 1], shown, touched) end
        i = i + 2
      end
      if fresh and write then
        record_input(i)
        if ARGV[i + 3] ~= '' and shown[id] then redis.call('HSET', KEYS[16], id, ARGV[i + 3]) end
        drop_unshown(shown)
        rehome_touched(touched, false)
      end
      if fresh then faces = faces + 1 end
      i = i + 4
    end
    results[op] = fresh and 1 or 0
  end
  if write then redis.call('SET', KEYS[8], faces) end
  return results
end

local checked = walk(false)
if checked.err then return checked end
return walk(true)
