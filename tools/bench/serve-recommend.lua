-- wrk script for `recforge serve`: each request asks GET /v1/recommend for a user drawn uniformly at
-- random from an export's user_ids.txt, and done() prints one machine-readable result line.
--
--   wrk -t 1 -c 64 -d 20s -s tools/bench/serve-recommend.lua http://127.0.0.1:PORT \
--       -- EXPORT/user_ids.txt [K] [SEED]
--   wrk ... -- EXPORT/item_ids.txt K SEED new-user:N
--   wrk ... -- EXPORT/user_ids.txt K SEED users:N
--   wrk ... -- EXPORT/item_ids.txt K SEED similar
--
-- K is the list length (default 20); SEED (default 1) seeds each thread's generator (SEED + its
-- number), so that two runs with the same arguments ask for the same sequence.
-- With new-user:N, the file lists item ids and each request POSTs /v1/recommend for one new user
-- (fold-in) of N distinct items drawn uniformly from it. With users:N, each request POSTs
-- /v1/recommend for N distinct known users drawn uniformly from user_ids.txt. With similar, the
-- file lists item ids and each request asks GET /v1/similar-items for one drawn uniformly.
-- The last line of the output is
--   WRK_RESULT requests=N duration_s=S rps=R p50_ms=A p99_ms=B p999_ms=C connect=E read=E
--     write=E timeout=E status=E non2xx=E errors=E
-- (one line): connect/read/write/timeout are wrk's socket errors, status its count of responses
-- with a status above 399, non2xx every response outside 200-299 (counted here), and errors the
-- failed requests: socket errors + non2xx. Latencies are wrk's (microseconds), printed in ms.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_number", #threads)
end

local function urlencode(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", string.byte(c)) end))
end

-- Per thread (each wrk thread has its own Lua state and runs init with the arguments after --).
local paths = {}
local items = {}
local new_user = 0 -- items per new user; 0: GET known users (or users:N)
local post_users = 0 -- known users per POST; 0: GET one user
local similar = false -- GET /v1/similar-items for one item of the file
local ids = {}
local k = 20
non2xx = 0

-- A JSON string literal of s (ids are UTF-8 text; quotes, backslashes and control bytes escaped).
local function json_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c) return string.format("\\u%04x", string.byte(c)) end) .. '"'
end

function init(args)
  local file = args[1]
  if file == nil then
    error("serve-recommend.lua: pass the export's user_ids.txt after --")
  end
  k = tonumber(args[2] or "20")
  local seed = tonumber(args[3] or "1")
  if k == nil or k < 1 then
    error("serve-recommend.lua: K " .. tostring(args[2]) .. " is not a positive number")
  end
  if args[4] ~= nil then
    local nu, pu = args[4]:match("^new%-user:(%d+)$"), args[4]:match("^users:(%d+)$")
    new_user, post_users = tonumber(nu or "0"), tonumber(pu or "0")
    similar = args[4] == "similar"
    if new_user < 1 and post_users < 1 and not similar then
      error("serve-recommend.lua: mode " .. args[4] .. " is not new-user:N, users:N with N >= 1 or similar")
    end
  end
  for line in io.lines(file) do
    if line ~= "" then
      if new_user > 0 then
        items[#items + 1] = line
      elseif post_users > 0 then
        ids[#ids + 1] = line
      elseif similar then
        paths[#paths + 1] = "/v1/similar-items?item=" .. urlencode(line) .. "&k=" .. k
      else
        paths[#paths + 1] = "/v1/recommend?user=" .. urlencode(line) .. "&k=" .. k
      end
    end
  end
  if #paths == 0 and #items == 0 and #ids == 0 then
    error("serve-recommend.lua: " .. file .. " holds no ids")
  end
  if post_users > #ids then
    error("serve-recommend.lua: users:" .. post_users .. " asks for more users than " .. file .. " holds")
  end
  if new_user > #items then
    error("serve-recommend.lua: new-user:" .. new_user .. " asks for more items than " .. file .. " holds")
  end
  math.randomseed(seed + (thread_number or 0))
end

-- n distinct entries of `from`, drawn uniformly, as JSON string literals.
local function draw(from, n)
  local chosen, list = {}, {}
  while #list < n do
    local i = math.random(#from)
    if not chosen[i] then
      chosen[i] = true
      list[#list + 1] = json_string(from[i])
    end
  end
  return list
end

function request()
  if post_users > 0 then
    local body = '{"users": [' .. table.concat(draw(ids, post_users), ", ") .. '], "k": ' .. k .. '}'
    return wrk.format("POST", "/v1/recommend", {["Content-Type"] = "application/json"}, body)
  end
  if new_user == 0 then
    return wrk.format("GET", paths[math.random(#paths)])
  end
  local list = draw(items, new_user)
  local body = '{"new_users": [{"items": [' .. table.concat(list, ", ") .. ']}], "k": ' .. k .. '}'
  return wrk.format("POST", "/v1/recommend", {["Content-Type"] = "application/json"}, body)
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
end

function done(summary, latency, requests)
  local n = 0
  for _, t in ipairs(threads) do
    n = n + (t:get("non2xx") or 0)
  end
  local e = summary.errors
  local seconds = summary.duration / 1e6
  local socket = e.connect + e.read + e.write + e.timeout
  io.write(string.format(
    "WRK_RESULT requests=%d duration_s=%.3f rps=%.1f p50_ms=%.3f p99_ms=%.3f p999_ms=%.3f " ..
    "connect=%d read=%d write=%d timeout=%d status=%d non2xx=%d errors=%d\n",
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    latency:percentile(99.9) / 1000, e.connect, e.read, e.write, e.timeout, e.status, n,
    socket + n))
end
