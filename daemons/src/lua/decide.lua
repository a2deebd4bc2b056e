-- decide.lua: decide a batch of reservations of ONE event, atomically.
--
-- KEYS[1]  stock     seats left (integer)
-- KEYS[2]  users     hash user_id -> confirmed quantity
-- KEYS[3]  outcomes  hash reservation_id -> outcome "<s>|<reason>|<qty>|<user>",
--                    s = p (pending marker), C (confirmed here, not yet
--                    committed), c (confirmed and committed: settle.lua),
--                    r (rejected)
-- ARGV[1]  per_user_limit
-- ARGV[2]  pub/sub channel for "soldout <event>"
-- ARGV[3]  event id
-- ARGV[4..] groups of 4: reservation_id, user_id, quantity, closed (1 = the
--           request arrived outside the sale window)
--
-- Both hashes carry a sentinel field "\1" (no user id or reservation id can
-- be a control character). If the stock or either sentinel is missing, Redis
-- lost part of the event's state: error NOSTOCK, and the caller rebuilds all
-- of it from PostgreSQL (restock.lua) and retries.
--
-- Returns the state's epoch (the value of the users hash's sentinel: the
-- events.epoch of PostgreSQL the state was built under, see restock.lua),
-- then one outcome string per reservation, in order. The worker commits
-- the winners under that epoch, and PostgreSQL refuses them if the state
-- was rebuilt or reset since (db.rs, commit_winners: the fence).
--
-- Invariants kept: stock never goes below 0 (no oversell); a reservation id
-- that already has a decision gets that decision back and changes nothing
-- (a redelivered message or a retried idempotency key is counted once); a
-- user's confirmed quantity never exceeds per_user_limit.
local stock = redis.call('GET', KEYS[1])
if not stock or redis.call('HEXISTS', KEYS[2], '\1') == 0
    or redis.call('HEXISTS', KEYS[3], '\1') == 0 then
  return redis.error_reply('NOSTOCK state missing, rebuild from PostgreSQL')
end
stock = tonumber(stock)
local epoch = redis.call('HGET', KEYS[2], '\1')
local limit = tonumber(ARGV[1])
local was_positive = stock > 0
local saw_sold_out = false
local out = {epoch}
for i = 4, #ARGV, 4 do
  local rid, user, qty, closed = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3]
  local prev = redis.call('HGET', KEYS[3], rid)
  local o
  if prev and string.sub(prev, 1, 1) ~= 'p' then
    o = prev
  else
    local reason
    -- In this order, the order the status route derives a lost rejection
    -- from PostgreSQL (gateway/routes/status.rs): the same answer again.
    if closed == '1' then
      reason = 'sale_closed'
    elseif tonumber(redis.call('HGET', KEYS[2], user) or '0') + qty > limit then
      reason = 'user_limit'
    elseif qty > stock then
      reason = 'sold_out'
      saw_sold_out = true
    end
    if reason then
      o = 'r|' .. reason .. '|' .. qty .. '|' .. user
    else
      stock = stock - qty
      redis.call('HINCRBY', KEYS[2], user, qty)
      o = 'C||' .. qty .. '|' .. user
    end
    redis.call('HSET', KEYS[3], rid, o)
  end
  out[#out + 1] = o
end
redis.call('SET', KEYS[1], stock)
-- Announce the transition (and re-announce on later sold-out rejections, so a
-- gateway that missed the first message still learns it).
if stock <= 0 and (was_positive or saw_sold_out) then
  redis.call('PUBLISH', ARGV[2], 'soldout ' .. ARGV[3])
end
return out
