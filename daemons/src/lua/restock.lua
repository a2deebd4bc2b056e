-- restock.lua: the last step of rebuilding one event's state from a
-- PostgreSQL snapshot, swapping in what the worker staged.
--
-- KEYS[1]  stock, KEYS[2] users, KEYS[3] won (see decide.lua)
-- KEYS[4]  the staged won hash: every committed reservation of the snapshot
--          as "c||<qty>|<user>", and each buyer's committed quantity as
--          "\2<user>" (see decide.lua)
-- KEYS[5]  the staged users hash: each user's committed quantity
-- ARGV[1]  capacity (from PostgreSQL)
-- ARGV[2]  the epoch the snapshot was taken under (db.rs, snapshot: each
--          snapshot moves the event's epoch on, fencing out commits of
--          decisions made in the state before)
-- ARGV[3]  the seats the snapshot holds (the sum of its quantities)
-- ARGV[4]  the event's sale generation
-- ARGV[5]  the fields the worker staged in KEYS[4] (the snapshot's rows
--          and buyers)
-- ARGV[6]  the fields it staged in KEYS[5] (the snapshot's buyers)
-- ARGV[7]  1 when holds gave seats back in this sale (a buyer's committed
--          quantity may then be below what the state being replaced
--          counted), else 0
--
-- The worker fills the staged hashes in chunks (a few hundred fields a
-- command), so no single step blocks Redis for long however many winners
-- there are; this script only renames them into place: O(1), plus freeing
-- the old hashes (bounded by the winners too). The cost of a rebuild grows
-- with the winners, never with the requests, since rejections are not part
-- of the state.
--
-- Returns the rebuilt stock; -1 when the state is of this snapshot's epoch
-- or a newer one (another worker rebuilt it from a later snapshot, whole
-- or since partly lost: an older snapshot must not replace it, the caller
-- takes a new one); -2 when the staged hashes are not what the worker
-- staged (Redis lost them half-way: a restart, a failover), so nothing is
-- swapped in and the caller takes a new snapshot. A state under an older
-- epoch is rebuilt: it may be a copy restored from before, or built from
-- an older snapshot after this one's.
--
-- Decisions made in the state being replaced and not yet committed (won
-- entries "C") are not carried over: they were made under an older epoch,
-- so PostgreSQL fences their commit and they are decided again, in this
-- state. Their buyers never read them (a "C" reads pending).
local epoch = redis.call('HGET', KEYS[2], '\1')
if epoch and tonumber(epoch) >= tonumber(ARGV[2]) then
  redis.call('UNLINK', KEYS[4], KEYS[5])
  return -1
end
if redis.call('HLEN', KEYS[4]) ~= tonumber(ARGV[5])
    or redis.call('HLEN', KEYS[5]) ~= tonumber(ARGV[6]) then
  redis.call('UNLINK', KEYS[4], KEYS[5])
  return -2
end
-- The committed seats the state being replaced counted, if of this sale:
-- with holds they can exceed the snapshot's (seats released since), and a
-- tentative rejection made certain by them must stay certain (a buyer
-- told "rejected" is never told "pending" again), so the count kept is
-- the sale's high-water mark. Without holds the snapshot's is never lower.
local kept_sale = redis.call('HGET', KEYS[3], '\1')
local kept = 0
-- The same for each buyer's committed quantity (a user_limit rejection
-- made certain by it), read only when holds gave seats back: the scan is
-- as long as the winners, and without releases no count shrinks.
local kept_users = {}
if kept_sale and tonumber(kept_sale) == tonumber(ARGV[4]) then
  kept = tonumber(redis.call('HGET', KEYS[3], '\2') or '0')
  if ARGV[7] == '1' then
    local all = redis.call('HGETALL', KEYS[3])
    for i = 1, #all, 2 do
      local f = all[i]
      if #f > 1 and string.byte(f, 1) == 2 then
        kept_users[#kept_users + 1] = { f, tonumber(all[i + 1]) }
      end
    end
  end
end
-- An empty snapshot stages nothing: the live hash is emptied instead.
-- The hashes replaced are unlinked (freed off Redis's main thread: they
-- grow with the winners), never deleted by RENAME's implicit DEL.
local function swap(staged, live)
  redis.call('UNLINK', live)
  if redis.call('EXISTS', staged) == 1 then
    redis.call('RENAME', staged, live)
    redis.call('PERSIST', live)
  end
end
swap(KEYS[4], KEYS[3])
swap(KEYS[5], KEYS[2])
local stock = tonumber(ARGV[1]) - tonumber(ARGV[3])
if stock < 0 then
  stock = 0
end
redis.call('SET', KEYS[1], stock)
redis.call('HSET', KEYS[2], '\1', ARGV[2])
local committed = tonumber(ARGV[3])
if kept > committed then
  committed = kept
end
redis.call('HSET', KEYS[3], '\1', ARGV[4], '\2', committed, '\3', ARGV[1])
for _, kv in ipairs(kept_users) do
  local now = tonumber(redis.call('HGET', KEYS[3], kv[1]) or '0')
  if kv[2] and kv[2] > now then
    redis.call('HSET', KEYS[3], kv[1], kv[2])
  end
end
return stock
