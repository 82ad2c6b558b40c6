-- POST /api/v1/auth/refresh, each connection carrying one rotation chain: a response hands
-- its new refresh token to the next request. Start tokens come from REFRESH_TOKENS
-- (space-separated, one per connection).
local queue = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end

function init(args)
  local all = {}
  for t in string.gmatch(os.getenv("REFRESH_TOKENS"), "%S+") do table.insert(all, t) end
  local threads = tonumber(os.getenv("WRK_THREADS"))
  -- Thread k takes every threads-th token starting at k.
  for i = id, #all, threads do table.insert(queue, all[i]) end
end

function request()
  local token = table.remove(queue, 1)
  -- wrk also calls request() once in its main Lua state, where init() never ran and there
  -- is no token; that request is never sent. In a thread every connection holds a token.
  if token == nil then return wrk.format("GET", "/healthz") end
  return wrk.format("POST", "/api/v1/auth/refresh", {["Content-Type"] = "application/json"},
    '{"refresh_token":"' .. token .. '"}')
end

function response(status, headers, body)
  if status ~= 200 then error("refresh answered " .. status) end
  table.insert(queue, string.match(body, '"refresh_token":"([^"]+)"'))
end
