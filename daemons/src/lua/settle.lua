-- settle.lua: mark confirmations as committed once PostgreSQL holds them.
--
-- KEYS[1]  won, KEYS[2] users (see decide.lua)
-- ARGV[1..3] the mark the worker last saw of this state (sale generation,
--          epoch, sequence; 0 0 0: none seen), see decide.lua's "Marks"
-- ARGV[4..] reservation ids
--
-- Only "C" (confirmed, uncommitted) entries change to "c": an entry revoked
-- or removed by a reset meanwhile stays as it is.
-- Each one settled is added to the committed counts (the event's seats and
-- its user's quantity, see decide.lua): the counts that make tentative
-- rejections certain.
-- A whole state (both sentinels there) behind the mark went back in time
-- (a copy restored from before): NOSTOCK, nothing written, and the worker
-- rebuilds it from PostgreSQL, which holds these confirmations already. A
-- whole state settled in counts one more call (decide.lua's "\4").
-- Returns the state's mark (sale generation, epoch, sequence; 0 0 0 when
-- the state is not whole), then how many were settled.
-- Read and checked first, then written: a script is not rolled back, and
-- the counts must never take part of a call.
local sale = redis.call('HGET', KEYS[1], '\1')
local epoch = redis.call('HGET', KEYS[2], '\1')
local whole = sale and epoch
if whole then
  local seq = tonumber(redis.call('HGET', KEYS[1], '\4') or '0')
  local s, e = tonumber(sale), tonumber(epoch)
  local m_sale, m_epoch, m_seq = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
  if s < m_sale or (s == m_sale and (e < m_epoch or (e == m_epoch and seq < m_seq))) then
    return redis.error_reply('NOSTOCK state behind what the worker saw of it, rebuild from PostgreSQL')
  end
end
-- In three calls, not three a confirmation: every entry read with one
-- HMGET, the flips written with one HSET, and each user's count added to
-- once (decide.lua's "Read in two calls" says why; call_in_parts:
-- parts.lua, loaded in front of this script).
local ids, seen = {}, {}
for i = 4, #ARGV do
  local id = ARGV[i]
  -- The same id twice in one call is settled once.
  if not seen[id] then
    seen[id] = true
    ids[#ids + 1] = id
  end
end
local values = call_in_parts('HMGET', KEYS[1], ids)
local flips, per_user, users = {}, {}, {}
local settled, seats = 0, 0
for n, id in ipairs(ids) do
  local v = values[n]
  if v and string.sub(v, 1, 1) == 'C' then
    local qty, user = string.match(v, '^C||(%d+)|(.*)$')
    if not qty then
      return redis.error_reply('unreadable confirmation of ' .. id .. ': ' .. v)
    end
    flips[#flips + 1] = id
    flips[#flips + 1] = 'c' .. string.sub(v, 2)
    if not per_user[user] then
      per_user[user] = 0
      users[#users + 1] = user
    end
    per_user[user] = per_user[user] + tonumber(qty)
    seats = seats + tonumber(qty)
    settled = settled + 1
  end
end
call_in_parts('HSET', KEYS[1], flips)
for _, user in ipairs(users) do
  redis.call('HINCRBY', KEYS[1], '\2' .. user, per_user[user])
end
if seats > 0 then
  redis.call('HINCRBY', KEYS[1], '\2', seats)
end
if not whole then
  return {'0', '0', '0', tostring(settled)}
end
local seq = redis.call('HINCRBY', KEYS[1], '\4', 1)
return {sale, epoch, tostring(seq), tostring(settled)}
