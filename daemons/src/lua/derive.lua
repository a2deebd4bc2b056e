-- derive.lua: record a rejection the status route derived from what
-- PostgreSQL makes certain, unless a decision is already recorded, so that
-- the worker — should the reservation still be on its way — decides it
-- alike (decide.lua returns a recorded rejection), and every later read
-- agrees with the one that derived it.
--
-- KEYS[1]  won (see decide.lua)
-- KEYS[2]  the reservation's outcome key
-- ARGV[1]  reservation id
-- ARGV[2]  the derived rejection "r|<reason>|<qty>|<user>"
-- ARGV[3]  time to live of a rejection (seconds)
--
-- Returns the outcome now recorded: a confirmation already made, a
-- rejection already decided, or the derived one.
local won = redis.call('HGET', KEYS[1], ARGV[1])
if won then
  return won
end
local prev = redis.call('GET', KEYS[2])
if prev and string.sub(prev, 1, 1) == 'r' then
  return prev
end
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
return ARGV[2]
