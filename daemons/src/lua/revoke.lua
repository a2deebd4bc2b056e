-- revoke.lua: undo confirmations PostgreSQL refused (its capacity guard
-- tripped because Redis was wrong) and force a rebuild of the stock.
--
-- KEYS[1]  stock, KEYS[2] users, KEYS[3] outcomes (see decide.lua)
-- ARGV[1..] groups of 3: reservation_id, user_id, quantity
--
-- Each listed reservation still confirmed becomes rejected sold_out and its
-- user's quantity is given back; the stock is deleted so the next decision
-- rebuilds it (restock.lua) from PostgreSQL and the remaining outcomes.
for i = 1, #ARGV, 3 do
  local prev = redis.call('HGET', KEYS[3], ARGV[i])
  if prev and string.lower(string.sub(prev, 1, 1)) == 'c' then
    redis.call('HSET', KEYS[3], ARGV[i], 'r|sold_out|' .. ARGV[i + 2] .. '|' .. ARGV[i + 1])
    redis.call('HINCRBY', KEYS[2], ARGV[i + 1], -tonumber(ARGV[i + 2]))
  end
end
redis.call('DEL', KEYS[1])
return 1
