-- parts.lua: loaded in front of the scripts that read or write in bulk
-- (decide.lua, settle.lua; see inventory/mod.rs).
--
-- call_in_parts(cmd, key, list): one command over every value of `list`
-- (after `key` when there is one: HMGET, HSET; none: MGET), in parts of
-- 1,000 values, and the replies of the parts joined in order. unpack()
-- puts every value on Lua's C stack, which takes some thousands at most;
-- an empty list makes no call (HMGET, MGET and HSET refuse no values).
local function call_in_parts(cmd, key, list)
  local reply = {}
  for i = 1, #list, 1000 do
    local args = {}
    if key then args[1] = key end
    for j = i, math.min(i + 999, #list) do args[#args + 1] = list[j] end
    local part = redis.call(cmd, unpack(args))
    if type(part) == 'table' then
      for _, v in ipairs(part) do reply[#reply + 1] = v end
    end
  end
  return reply
end
