-- POST /api/v1/auth/introspect (a form, RFC 7662) of the TOKEN access token, as a
-- resource server with the API key in KEY.
wrk.method = "POST"
wrk.path = "/api/v1/auth/introspect"
wrk.headers["Authorization"] = "ApiKey " .. os.getenv("KEY")
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.body = "token=" .. os.getenv("TOKEN")

function response(status, headers, body)
  if status ~= 200 or not string.find(body, '"active":true', 1, true) then
    error("introspect answered " .. status)
  end
end
