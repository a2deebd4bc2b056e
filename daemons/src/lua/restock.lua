-- restock.lua: rebuild one event's stock when it is missing from Redis.
--
-- KEYS[1]  stock, KEYS[2] users, KEYS[3] outcomes (see decide.lua)
-- ARGV[1]  capacity (from PostgreSQL)
-- ARGV[2]  the epoch the snapshot was taken under (db.rs, snapshot: each
--          snapshot moves the event's epoch on, fencing out commits of
--          decisions made in the state before)
-- ARGV[3..] groups of 3: reservation_id, user_id, quantity of every
--           reservation PostgreSQL has confirmed
--
-- Returns the rebuilt stock, or -1 when the state was whole (another worker
-- rebuilt it from this snapshot's epoch or a newer one: nothing is
-- changed). The state is whole
-- when the stock and the sentinel field "\1" of both hashes exist (see
-- decide.lua).
--
-- Confirmed = what PostgreSQL committed UNION what Redis decided but no worker
-- has committed yet (outcomes "C" still in the hash), so decisions in flight
-- are not handed out a second time. Users' quantities are recomputed from the
-- same set, so per_user_limit holds across the rebuild.
if redis.call('EXISTS', KEYS[1]) == 1 and redis.call('HEXISTS', KEYS[2], '\1') == 1
    and redis.call('HEXISTS', KEYS[3], '\1') == 1
    and tonumber(redis.call('HGET', KEYS[2], '\1')) >= tonumber(ARGV[2]) then
  return -1
end
-- A whole state under an older epoch is rebuilt too: it may be a copy
-- restored from before, or built from an older snapshot after this one's
-- rows; only a rebuild from this snapshot makes it agree with PostgreSQL.
for i = 3, #ARGV, 3 do
  local prev = redis.call('HGET', KEYS[3], ARGV[i])
  if not prev or string.lower(string.sub(prev, 1, 1)) ~= 'c' then
    redis.call('HSET', KEYS[3], ARGV[i], 'c||' .. ARGV[i + 2] .. '|' .. ARGV[i + 1])
  end
end
redis.call('DEL', KEYS[2])
local confirmed = 0
local all = redis.call('HGETALL', KEYS[3])
for i = 2, #all, 2 do
  local v = all[i]
  if string.lower(string.sub(v, 1, 1)) == 'c' then
    local qty, user = string.match(v, '^[cC]|[^|]*|(%d+)|(.*)$')
    qty = tonumber(qty)
    confirmed = confirmed + qty
    redis.call('HINCRBY', KEYS[2], user, qty)
  end
end
local stock = tonumber(ARGV[1]) - confirmed
if stock < 0 then
  stock = 0
end
redis.call('SET', KEYS[1], stock)
redis.call('HSET', KEYS[2], '\1', ARGV[2])
redis.call('HSET', KEYS[3], '\1', 1)
return stock
