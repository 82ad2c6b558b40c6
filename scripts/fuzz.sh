#!/usr/bin/env bash
# `make fuzz`: schemathesis against the release binary over a scratch database, with the
# checks not_a_server_error, status_code_conformance and response_schema_conformance, once
# signed in and once anonymous (FUZZ_SECONDS each, default 120), after the served document
# passes openapi-spec-validator. The summary is written to docs/fuzz.md.
set -euo pipefail
cd "$(dirname "$0")/.."
port="${FUZZ_PORT:-18282}"
seconds="${FUZZ_SECONDS:-120}"
seed="${FUZZ_SEED:-1}"
venv=$(scripts/py-venv.sh schemathesis openapi-spec-validator)

url=$(scripts/db.sh url gatehouse_fuzz)
psql "${url%/*}/postgres" -qc "DROP DATABASE IF EXISTS gatehouse_fuzz WITH (FORCE)" -c "CREATE DATABASE gatehouse_fuzz" >/dev/null
export DATABASE_URL="$url" APP_ENV=development RUN_JOBS=false RUST_LOG=warn BIND_ADDR="127.0.0.1:$port" \
  PUBLIC_BASE_URL="http://127.0.0.1:$port"
SQLX_OFFLINE=true cargo build --release -q
bin=target/release/gatehouse
"$bin" migrate >/dev/null
"$bin" serve > target/fuzz-server.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
base="http://127.0.0.1:$port"
for _ in $(seq 100); do curl -sf "$base/healthz" >/dev/null && break; sleep 0.1; done

curl -sf "$base/api/v1/openapi.json" > target/openapi.json
"$venv/bin/python" -c 'import json, sys; from openapi_spec_validator import validate; validate(json.load(open(sys.argv[1])))' target/openapi.json
echo "fuzz: the served document validates"

# Signed in first: the anonymous run's wrong logins would block this address's logins.
curl -sf -XPOST "$base/api/v1/auth/register" -H 'content-type: application/json' \
  -d '{"email":"fuzz@example.com","username":"fuzzer","password":"Correct-Horse-Battery-9"}' >/dev/null
access=$(curl -sf -XPOST "$base/api/v1/auth/login" -H 'content-type: application/json' \
  -d '{"email":"fuzz@example.com","password":"Correct-Horse-Battery-9"}' \
  | "$venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')

run() {
  local name=$1; shift
  "$venv/bin/schemathesis" run "$base/api/v1/openapi.json" \
    -c not_a_server_error,status_code_conformance,response_schema_conformance \
    --max-time "$seconds" --seed "$seed" --no-color "$@" > "target/fuzz-$name.txt" 2>&1
}
status=0
# Signing out or deleting the account would end the signed-in run early.
run signed-in -H "Authorization: Bearer $access" --exclude-path-regex 'logout|/users/me$' || status=1
run anonymous || status=$((status | 2))

summary() { grep -E '^(  Selected|  Tested|  [0-9]+ generated|.*(passed|failures?|warnings?) in )' "target/fuzz-$1.txt" | sed 's/^ */- /'; }
failures() { grep -E '^(- ST[0-9]+|    Received|    Documented|    curl )' "target/fuzz-$1.txt" || true; }
{
  echo "# Latest \`make fuzz\` result"
  echo
  echo "Written by scripts/fuzz.sh; commit it with the change it checked."
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (with uncommitted changes)')"
  echo "- $("$venv/bin/schemathesis" --version), seed $seed, $seconds s per run, release binary"
  echo "- checks: not_a_server_error, status_code_conformance, response_schema_conformance"
  echo "- the served document passes openapi-spec-validator"
  for name in signed-in anonymous; do
    echo
    echo "## $name"
    echo
    summary "$name"
    f=$(failures "$name")
    if [ -n "$f" ]; then echo; echo '```'; echo "$f"; echo '```'; fi
  done
} > docs/fuzz.md
cat docs/fuzz.md
exit "$status"
