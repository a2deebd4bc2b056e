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
local settled, seen = {}, {}
for i = 4, #ARGV do
  local id = ARGV[i]
  -- The same id twice in one call is settled once.
  if not seen[id] then
    seen[id] = true
    local v = redis.call('HGET', KEYS[1], id)
    if v and string.sub(v, 1, 1) == 'C' then
      local qty, user = string.match(v, '^C||(%d+)|(.*)$')
      if not qty then
        return redis.error_reply('unreadable confirmation of ' .. id .. ': ' .. v)
      end
      settled[#settled + 1] = {id, v, tonumber(qty), user}
    end
  end
end
local seats = 0
for _, s in ipairs(settled) do
  local id, v, qty, user = s[1], s[2], s[3], s[4]
  redis.call('HSET', KEYS[1], id, 'c' .. string.sub(v, 2))
  redis.call('HINCRBY', KEYS[1], '\2' .. user, qty)
  seats = seats + qty
end
if seats > 0 then
  redis.call('HINCRBY', KEYS[1], '\2', seats)
end
if not whole then
  return {'0', '0', '0', tostring(#settled)}
end
local seq = redis.call('HINCRBY', KEYS[1], '\4', 1)
return {sale, epoch, tostring(seq), tostring(#settled)}
