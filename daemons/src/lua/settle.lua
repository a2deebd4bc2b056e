-- settle.lua: mark confirmations as committed once PostgreSQL holds them.
--
-- KEYS[1]  won (see decide.lua)
-- ARGV[1..] reservation ids
--
-- Returns how many were settled. Only "C" (confirmed, uncommitted) entries
-- change to "c": an entry revoked or removed by a reset meanwhile stays as it is.
-- Each one settled is added to the committed counts (the event's seats and
-- its user's quantity, see decide.lua): the counts that make tentative
-- rejections certain.
local n, seats = 0, 0
for i = 1, #ARGV do
  local v = redis.call('HGET', KEYS[1], ARGV[i])
  if v and string.sub(v, 1, 1) == 'C' then
    local qty, user = string.match(v, '^C||(%d+)|(.*)$')
    redis.call('HSET', KEYS[1], ARGV[i], 'c' .. string.sub(v, 2))
    redis.call('HINCRBY', KEYS[1], '\2' .. user, qty)
    seats = seats + tonumber(qty)
    n = n + 1
  end
end
if seats > 0 then
  redis.call('HINCRBY', KEYS[1], '\2', seats)
end
return n
