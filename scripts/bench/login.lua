-- POST /api/v1/auth/login with the bench user's credentials.
wrk.method = "POST"
wrk.path = "/api/v1/auth/login"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"email":"bench@example.com","password":"Correct-Horse-Battery-9"}'

function response(status, headers, body)
  if status ~= 200 then error("login answered " .. status) end
end
