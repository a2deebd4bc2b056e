-- revoke.lua: undo confirmations PostgreSQL refused (its capacity or
-- per-user guard tripped because Redis was wrong) and force a rebuild.
--
-- KEYS[1]  stock, KEYS[2] users, KEYS[3] won (see decide.lua)
-- KEYS[4..] the outcome key of each listed reservation, in ARGV's order
-- ARGV[1]  time to live of a rejection (seconds)
-- ARGV[2..] groups of 4: reservation_id, user_id, quantity, reason
--           (sold_out or user_limit: the rule PostgreSQL enforced)
--
-- Each listed reservation still confirmed becomes rejected with that reason
-- (it leaves the won hash for an expiring outcome key) and its user's
-- quantity is given back; the stock is deleted so the next decision
-- rebuilds the state (restock.lua) from PostgreSQL.
local ttl = tonumber(ARGV[1])
local k = 3
for i = 2, #ARGV, 4 do
  k = k + 1
  local prev = redis.call('HGET', KEYS[3], ARGV[i])
  if prev then
    redis.call('HDEL', KEYS[3], ARGV[i])
    if string.sub(prev, 1, 1) == 'c' then
      -- Never so (PostgreSQL refused it, so holds no row of it), but the
      -- committed counts must never count a seat PostgreSQL does not hold.
      redis.call('HINCRBY', KEYS[3], '\2', -tonumber(ARGV[i + 2]))
      redis.call('HINCRBY', KEYS[3], '\2' .. ARGV[i + 1], -tonumber(ARGV[i + 2]))
    end
    redis.call('SET', KEYS[k], 'r|' .. ARGV[i + 3] .. '|' .. ARGV[i + 2] .. '|' .. ARGV[i + 1], 'EX', ttl)
    redis.call('HINCRBY', KEYS[2], ARGV[i + 1], -tonumber(ARGV[i + 2]))
  end
end
redis.call('DEL', KEYS[1])
return 1
