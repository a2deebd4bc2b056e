-- reset.lua: restore an event for a drill (or set up a new one): full
-- stock, no confirmations, a new sale.
--
-- KEYS[1]  stock, KEYS[2] users, KEYS[3] won (see decide.lua)
-- ARGV[1]  capacity
-- ARGV[2]  the event's epoch in PostgreSQL after the reset (see decide.lua)
-- ARGV[3]  the event's sale generation after the reset
--
-- The old sale's outcome keys (pending markers, rejections) are left to
-- expire: a reservation of the old sale still queued is rejected when it is
-- decided (its sale is older than the state's).
--
-- Returns the stock set, or -1 when the state is already of a later epoch:
-- a worker rebuilt it from a snapshot taken after this reset (which holds
-- the reset), and wiping it would lower the epoch under its feet.
local epoch = redis.call('HGET', KEYS[2], '\1')
if epoch and tonumber(epoch) > tonumber(ARGV[2]) then
  return -1
end
-- UNLINK: gone at once, freed off Redis's main thread. A DEL of the won
-- hash of a sale of 200,000 winners held Redis for half a second.
redis.call('UNLINK', KEYS[2], KEYS[3])
redis.call('SET', KEYS[1], ARGV[1])
-- The sentinels that say "this state is whole" (see decide.lua).
redis.call('HSET', KEYS[2], '\1', ARGV[2])
redis.call('HSET', KEYS[3], '\1', ARGV[3], '\3', ARGV[1])
return tonumber(ARGV[1])
