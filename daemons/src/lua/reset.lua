-- reset.lua: restore an event for a drill: full stock, no decisions.
--
-- KEYS[1]  stock, KEYS[2] users, KEYS[3] outcomes (see decide.lua)
-- ARGV[1]  capacity
-- ARGV[2]  the event's epoch in PostgreSQL after the reset (see decide.lua)
--
-- Returns the stock set.
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('SET', KEYS[1], ARGV[1])
-- The sentinels that say "this state is whole" (see decide.lua).
redis.call('HSET', KEYS[2], '\1', ARGV[2])
redis.call('HSET', KEYS[3], '\1', 1)
return tonumber(ARGV[1])
