-- POST /api/v1/auth/refresh over rotation chains: a response hands its new refresh token to
-- the next request. Start tokens come from REFRESH_TOKENS (space-separated); thread k of
-- WRK_THREADS takes every WRK_THREADS-th token. A connection with no token at hand (more
-- connections than chains in flight) sends GET /healthz instead; done() reports how many,
-- so a run that measured those is visible.
local queue = {}
-- wrk calls request() once in the first thread's state before the run, to check the
-- request, and never sends it: that call must not spend a token (it used to, leaving the
-- first thread one chain short and its connections sending /healthz).
local checked = false
local counter = 0
local threads = {}
fallbacks = 0
failures = 0

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end

function init(args)
  local all = {}
  for t in string.gmatch(os.getenv("REFRESH_TOKENS"), "%S+") do table.insert(all, t) end
  local n = tonumber(os.getenv("WRK_THREADS"))
  for i = id, #all, n do table.insert(queue, all[i]) end
end

function request()
  if id == 1 and not checked then
    checked = true
    return refresh(queue[1] or "")
  end
  local token = table.remove(queue, 1)
  if token == nil then
    fallbacks = fallbacks + 1
    return wrk.format("GET", "/healthz")
  end
  return refresh(token)
end

function refresh(token)
  return wrk.format("POST", "/api/v1/auth/refresh", {["Content-Type"] = "application/json"},
    '{"refresh_token":"' .. token .. '"}')
end

function response(status, headers, body)
  local token = string.match(body, '"refresh_token":"([^"]+)"')
  if token then
    table.insert(queue, token)
  elseif status ~= 200 or not string.find(body, '"status"') then
    failures = failures + 1
  end
end

function done(summary, latency, requests)
  local f, e = 0, 0
  for _, t in ipairs(threads) do
    f = f + t:get("fallbacks")
    e = e + t:get("failures")
  end
  io.write(string.format("fallback requests (no token at hand): %d; refresh failures: %d\n", f, e))
end
