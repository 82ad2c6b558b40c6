-- GET /api/v1/users/me with the bearer token in the TOKEN environment variable.
wrk.method = "GET"
wrk.path = "/api/v1/users/me"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")

function response(status, headers, body)
  if status ~= 200 then error("users/me answered " .. status) end
end
