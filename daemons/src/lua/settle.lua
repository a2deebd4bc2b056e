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
-- Read and checked first, then written: a script is not rolled back, and
-- the counts must never take part of a call.
local settled = {}
for i = 1, #ARGV do
  local v = redis.call('HGET', KEYS[1], ARGV[i])
  if v and string.sub(v, 1, 1) == 'C' then
    local qty, user = string.match(v, '^C||(%d+)|(.*)$')
    if not qty then
      return redis.error_reply('unreadable confirmation of ' .. ARGV[i] .. ': ' .. v)
    end
    settled[#settled + 1] = {ARGV[i], v, tonumber(qty), user}
  end
end
local seats = 0
for _, s in ipairs(settled) do
  local id, v, qty, user = s[1], s[2], s[3], s[4]
  -- The same id twice in one call is settled once.
  if redis.call('HGET', KEYS[1], id) == v then
    redis.call('HSET', KEYS[1], id, 'c' .. string.sub(v, 2))
    redis.call('HINCRBY', KEYS[1], '\2' .. user, qty)
    seats = seats + qty
  end
end
if seats > 0 then
  redis.call('HINCRBY', KEYS[1], '\2', seats)
end
return #settled
