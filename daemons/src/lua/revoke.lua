-- revoke.lua: undo confirmations PostgreSQL refused (its capacity or
-- per-user guard tripped because Redis was wrong) and force a rebuild.
--
-- KEYS[1]  stock, KEYS[2] users, KEYS[3] outcomes (see decide.lua)
-- ARGV[1..] groups of 4: reservation_id, user_id, quantity, reason
--           (sold_out or user_limit: the rule PostgreSQL enforced)
--
-- Each listed reservation still confirmed becomes rejected with that reason
-- and its user's quantity is given back; the stock is deleted so the next
-- decision rebuilds the state (restock.lua) from PostgreSQL and the
-- remaining outcomes.
for i = 1, #ARGV, 4 do
  local prev = redis.call('HGET', KEYS[3], ARGV[i])
  if prev and string.lower(string.sub(prev, 1, 1)) == 'c' then
    redis.call('HSET', KEYS[3], ARGV[i], 'r|' .. ARGV[i + 3] .. '|' .. ARGV[i + 2] .. '|' .. ARGV[i + 1])
    redis.call('HINCRBY', KEYS[2], ARGV[i + 1], -tonumber(ARGV[i + 2]))
  end
end
redis.call('DEL', KEYS[1])
return 1
