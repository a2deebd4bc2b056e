-- decide.lua: decide a batch of reservations of ONE event, atomically.
--
-- KEYS[1]  stock     seats left (integer)
-- KEYS[2]  users     hash user_id -> confirmed quantity
-- KEYS[3]  won       hash reservation_id -> confirmation "<s>||<qty>|<user>",
--                    s = C (confirmed here, not yet committed) or c
--                    (confirmed and committed: settle.lua); and what the
--                    committed ones add up to: "\2" -> the event's committed
--                    seats, "\2<user>" -> that user's committed quantity
--                    (settle.lua adds to them, restock.lua sets them from
--                    PostgreSQL); "\3" -> the capacity; "\4" -> the calls
--                    that changed this state (see "Marks")
-- KEYS[4..] one per reservation, in ARGV's order: its outcome key, a string
--           "<s>|<reason>|<qty>|<user>" with s = p (pending marker, set by
--           the gateway), r (rejected) or R<n> (rejected tentatively, see
--           below), expiring OUTCOME_TTL after it was last written
-- ARGV[1]  per_user_limit
-- ARGV[2]  pub/sub channel for "soldout <event>"
-- ARGV[3]  event id
-- ARGV[4]  time to live of a rejection (seconds)
-- ARGV[5]  the floor's sale generation (0: no floor known)
-- ARGV[6]  the floor: the most seats that can be left in that sale, as of
--          the last commit or snapshot the worker made or heard of
--          (capacity − PostgreSQL's confirmed seats; those only grow
--          within a sale)
-- ARGV[7..9] the mark the worker last saw of this state (sale generation,
--          epoch, sequence; 0 0 0: none seen), see "Marks" below
-- ARGV[10] the epoch the batch's earlier calls for this event were decided
--          under ('' for its first call), see "Calls of one batch" below
-- ARGV[11..] groups of 6: reservation_id, user_id, quantity, closed (1 = the
--           request arrived outside the sale window), sale (the event's sale
--           generation the gateway accepted it in), kept (the reason of a
--           rejection the caller decided for it before, in an earlier attempt
--           at its batch; '' for none)
--
-- Memory: only confirmations stay (bounded by the seats); rejections expire.
--
-- Tentative rejections. A sold_out or user_limit rejection counts the
-- confirmations of this state, and some of those may not be committed yet
-- (C entries, this batch's own or another worker's). Until they are, Redis
-- may lose them (a wipe, a failover to a replica that had not received
-- them) and the reservation, decided again, may be sold a seat: a buyer who
-- had read "rejected" would then hold one. So such a rejection is written
-- "R<n>": its buyer reads pending, and it becomes certain once the
-- committed count its reason counts reaches n (the event's committed seats
-- for sold_out: committed + qty > capacity; the user's for user_limit:
-- committed + qty > limit). The committed counts in the won hash never
-- exceed PostgreSQL's (each counts rows PostgreSQL holds, which only grow
-- within a sale), so a rejection certain by them is certain by PostgreSQL:
-- decided again in any state rebuilt since, it is the same rejection. A
-- tentative rejection not certain yet is no decision: decided again (a
-- redelivery, a retried batch), it is decided afresh; certain by now, it is
-- recorded certain ("r") and kept. Readers (the status route, the worker
-- waiting on its batch) check the counts themselves.
--
-- The users hash and the won hash carry a sentinel field "\1" (no user id or
-- reservation id can be a control character): the users hash's holds the
-- state's epoch (the events.epoch of PostgreSQL it was built under, see
-- restock.lua), the won hash's the event's sale generation. If the stock,
-- either sentinel or the capacity is missing, Redis lost part of the
-- event's state (or it was built before the capacity was kept): error
-- NOSTOCK, and the caller rebuilds all of it from PostgreSQL (restock.lua)
-- and retries. A reservation stamped with a later sale than the state's
-- means the state missed a reset: NOSTOCK too. So does a stock above the
-- floor: the state looks whole but is older than what PostgreSQL already
-- holds (a copy restored from before, a lagging replica promoted), and
-- would hand out seats and limits a second time.
--
-- Marks. A copy restored from before can also have no more seats left
-- than PostgreSQL allows (its seats were decided, not yet committed, when
-- it was taken): the floor cannot tell it is behind, yet it holds
-- confirmations PostgreSQL committed since as uncommitted ("C": nothing
-- settles them again, and rejections counted against the committed seats
-- stay tentative for good), and it forgets what was decided since. So the
-- won hash counts the calls that changed the state, in field "\4" (this
-- script and settle.lua add one each), and every call returns the state's
-- mark: its sale generation, its epoch and that count. A state only moves
-- forward in that order (a rebuild or a reset moves the epoch on and
-- starts the count again), so one whose mark is below what a worker saw
-- of it went back in time: NOSTOCK, and the worker rebuilds it.
--
-- Calls of one batch. The worker decides a big batch in several calls,
-- and first attempts must decide in the order taken. A state rebuilt
-- between two calls (by another worker) holds none of what the first
-- decided, and deciding the rest in it would put those later ones first:
-- a call told the epoch of the batch's earlier calls refuses another
-- (REBUILT), nothing written, and the worker decides the batch's
-- reservations of the event again from its first call.
--
-- Returns the state's mark (sale generation, epoch, sequence), then one
-- outcome string per reservation, in order. The worker commits the winners
-- under that epoch, and PostgreSQL refuses them if the state was rebuilt
-- or reset since (db.rs, commit_winners: the fence).
--
-- Invariants kept: stock never goes below 0 (no oversell); a reservation id
-- that already has a decision gets that decision back and changes nothing
-- (a redelivered message or a retried idempotency key is counted once); a
-- user's confirmed quantity never exceeds per_user_limit; a reservation of
-- a sale that was reset since is rejected (sale_closed), never sold in the
-- new one; no rejection its buyer can read rests on a confirmation not
-- committed (tentative rejections, above); a certain rejection the caller
-- decided before (kept) stays a rejection even where this state forgot it
-- (a wipe, a rebuild: its buyer may have read it).
local stock = redis.call('GET', KEYS[1])
local epoch = redis.call('HGET', KEYS[2], '\1')
local sale = redis.call('HGET', KEYS[3], '\1')
local capacity = redis.call('HGET', KEYS[3], '\3')
if not stock or not epoch or not sale or not capacity then
  return redis.error_reply('NOSTOCK state missing, rebuild from PostgreSQL')
end
-- Not "MOVED": a cluster client takes that code for a redirect.
if ARGV[10] ~= '' and tonumber(ARGV[10]) ~= tonumber(epoch) then
  return redis.error_reply('REBUILT state rebuilt since the batch was first decided in it')
end
capacity = tonumber(capacity)
local committed = tonumber(redis.call('HGET', KEYS[3], '\2') or '0')
sale = tonumber(sale)
stock = tonumber(stock)
if tonumber(ARGV[5]) == sale and stock > tonumber(ARGV[6]) then
  return redis.error_reply('NOSTOCK state behind PostgreSQL, rebuild from PostgreSQL')
end
local seq = tonumber(redis.call('HGET', KEYS[3], '\4') or '0')
local m_sale, m_epoch, m_seq = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local e = tonumber(epoch)
if sale < m_sale or (sale == m_sale and (e < m_epoch or (e == m_epoch and seq < m_seq))) then
  return redis.error_reply('NOSTOCK state behind what the worker saw of it, rebuild from PostgreSQL')
end
for i = 11, #ARGV, 6 do
  if tonumber(ARGV[i + 4]) > sale then
    return redis.error_reply('NOSTOCK state older than the sale, rebuild from PostgreSQL')
  end
end
local limit = tonumber(ARGV[1])
local ttl = tonumber(ARGV[4])
local was_positive = stock > 0
local saw_sold_out = false
-- Read in two calls, not two a reservation: every id's entry in the won
-- hash (HMGET) and every outcome key (MGET), before anything is written.
-- What this call writes is kept beside what it read, so an id met twice
-- in one call reads what its first meeting wrote; the won hash's writes
-- go out in one call at the end. A seat sold took five calls into Redis
-- and takes two; Redis's time a reservation, with settle.lua's, went from
-- 8.8-10.1 to 8.5-8.6 µs: most of it is the commands' own work.
-- (call_in_parts: parts.lua, loaded in front of this script.)
local ids, keys = {}, {}
for i = 11, #ARGV, 6 do ids[#ids + 1] = ARGV[i] end
for k = 4, #KEYS do keys[#keys + 1] = KEYS[k] end
local won_read = call_in_parts('HMGET', KEYS[3], ids)
local key_read = call_in_parts('MGET', nil, keys)
local won_new, key_new, won_writes = {}, {}, {}
local function won_get(rid, n)
  local v = won_new[rid]
  if v == nil then v = won_read[n] end
  return v
end
local function key_get(k)
  local v = key_new[KEYS[k]]
  if v == nil then v = key_read[k - 3] end
  return v
end
local function key_set(k, v)
  redis.call('SET', KEYS[k], v, 'EX', ttl)
  key_new[KEYS[k]] = v
end
local out = {tostring(sale), epoch, ''}
local k = 3
for i = 11, #ARGV, 6 do
  k = k + 1
  local rid, user, qty, closed, of_sale, kept = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3], tonumber(ARGV[i + 4]), ARGV[i + 5]
  local o
  if of_sale < sale then
    -- Of a sale reset since: whatever its id holds in the won hash is the
    -- new sale's (a retried idempotency key gives the same id).
    o = key_get(k)
    if not o or string.sub(o, 1, 1) ~= 'r' then
      o = 'r|sale_closed|' .. qty .. '|' .. user
      key_set(k, o)
    end
  else
    o = won_get(rid, k - 3)
  end
  local prev
  if not o then
    prev = key_get(k)
    if prev then
      local s = string.sub(prev, 1, 1)
      if s == 'r' then
        o = prev
      elseif s == 'R' then
        -- Tentative: the decision if it is certain by now, else none.
        local n, reason = string.match(prev, '^R(%d+)|([%a_]+)|')
        local count = committed
        if reason == 'user_limit' then
          count = tonumber(redis.call('HGET', KEYS[3], '\2' .. user) or '0')
        end
        if n and count >= tonumber(n) then
          o = 'r' .. string.sub(prev, #n + 2)
          key_set(k, o)
        end
      end
    end
  end
  if not o and kept ~= '' then
    -- Rejected by the caller's earlier attempt, and forgotten here since:
    -- recorded again, never decided afresh against a state that may no
    -- longer hold what it was decided against.
    o = 'r|' .. kept .. '|' .. qty .. '|' .. user
    key_set(k, o)
  end
  if not o then
    local reason
    -- In this order, the order the status route derives a lost rejection
    -- from PostgreSQL (gateway/routes/status.rs): the same answer again.
    if closed == '1' then
      reason = 'sale_closed'
    elseif qty > limit then
      -- Over the limit whatever the user holds: no call at all (and no
      -- users entry for a buyer who never held a seat).
      reason = 'user_limit'
    elseif qty > stock then
      if tonumber(redis.call('HGET', KEYS[2], user) or '0') + qty > limit then
        reason = 'user_limit'
      else
        reason = 'sold_out'
        saw_sold_out = true
      end
    elseif redis.call('HINCRBY', KEYS[2], user, qty) > limit then
      -- Taken first and given back when over the limit: a seat sold costs
      -- one call on the users hash, not a read and a write. Given back
      -- only to a user who holds seats already (qty alone is within the
      -- limit), so the hash keeps no entry a winner did not make.
      redis.call('HINCRBY', KEYS[2], user, -qty)
      reason = 'user_limit'
    end
    if reason then
      -- Certain when the committed count alone rejects it (see above).
      local s = 'r'
      if reason ~= 'sale_closed' then
        local bound, count = capacity, committed
        if reason == 'user_limit' then
          bound = limit
          count = tonumber(redis.call('HGET', KEYS[3], '\2' .. user) or '0')
        end
        local n = bound - qty + 1
        if count < n then
          s = 'R' .. n
        end
      end
      o = s .. '|' .. reason .. '|' .. qty .. '|' .. user
      key_set(k, o)
    else
      stock = stock - qty
      o = 'C||' .. qty .. '|' .. user
      won_new[rid] = o
      won_writes[#won_writes + 1] = rid
      won_writes[#won_writes + 1] = o
      -- The pending marker stays (the won hash is read first): should a
      -- rebuild drop this uncommitted confirmation, the reservation still
      -- reads pending, and a keyed retry is queued, not told sold_out.
      -- Written here only where the gateway's is missing (a group it left
      -- unmarked, a Redis that lost it) or a tentative rejection holds it.
      -- Its time to live starts again here either way, as a rejection's does.
      if not prev or string.sub(prev, 1, 1) ~= 'p' then
        key_set(k, 'p||' .. qty .. '|' .. user)
      else
        redis.call('EXPIRE', KEYS[k], ttl)
      end
    end
  end
  out[#out + 1] = o
end
call_in_parts('HSET', KEYS[3], won_writes)
redis.call('SET', KEYS[1], stock)
-- Announce the transition (and re-announce on later sold-out rejections, so a
-- gateway that missed the first message still learns it).
if stock <= 0 and (was_positive or saw_sold_out) then
  redis.call('PUBLISH', ARGV[2], 'soldout ' .. ARGV[3])
end
out[3] = tostring(redis.call('HINCRBY', KEYS[3], '\4', 1))
return out
