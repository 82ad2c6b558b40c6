-- GET /api/v1/auth/whoami with the bearer token in the TOKEN environment variable.
wrk.method = "GET"
wrk.path = "/api/v1/auth/whoami"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")

function response(status, headers, body)
  if status ~= 200 then error("whoami answered " .. status) end
end
