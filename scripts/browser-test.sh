#!/usr/bin/env bash
# The /admin page in headless Chromium (Debian's chromium, driven by playwright-core):
# a scratch database with a staff user and some audit events, the debug binary serving it,
# then tests/browser/admin.mjs. Installs what is missing (Debian's chromium, nodejs and npm;
# the npm package playwright-core), quietly: apt's output goes to target/apt-install.log.
set -euo pipefail
cd "$(dirname "$0")/.."
port="${BROWSER_TEST_PORT:-18181}"
sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
need() { command -v "$1" >/dev/null 2>&1; }
missing=()
need chromium || missing+=(chromium)
{ need node && need npm; } || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  mkdir -p target
  log=target/apt-install.log
  echo "browser-test: installing ${missing[*]} with apt-get (output in $log)" >&2
  if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"; } >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    exit 1
  fi
  echo "browser-test: installed ${missing[*]}" >&2
fi
(cd tests/browser && npm ci --no-audit --no-fund --silent >&2)

url=$(scripts/db.sh url gatehouse_browser)
psql "${url%/*}/postgres" -qc "DROP DATABASE IF EXISTS gatehouse_browser WITH (FORCE)" -c "CREATE DATABASE gatehouse_browser" >/dev/null
export DATABASE_URL="$url" APP_ENV=development RUN_JOBS=false RUST_LOG=warn BIND_ADDR="127.0.0.1:$port"
SQLX_OFFLINE=true cargo build -q
bin=target/debug/gatehouse
"$bin" migrate >/dev/null
password="Correct-Horse-Battery-9"
GATEHOUSE_PASSWORD="$password" "$bin" createsuperuser --email root@example.com --username root >/dev/null
# The test admin signs in with a password only: no MFA enrolment exists yet.
psql "$url" -qc "INSERT INTO accounts_mfasettings (user_id, enforce_for_admin) SELECT id, false FROM auth_user WHERE username = 'root'"

"$bin" serve > target/browser-server.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
base="http://127.0.0.1:$port"
for _ in $(seq 100); do curl -sf "$base/healthz" >/dev/null && break; sleep 0.1; done
post() { curl -sf -XPOST "$base$1" -H 'content-type: application/json' -d "$2"; }
post /api/v1/auth/register '{"email":"ann@example.com","username":"ann","password":"Tangerine-Lighthouse-42"}' >/dev/null
curl -s -o /dev/null -XPOST "$base/api/v1/auth/login" -H 'content-type: application/json' \
  -d '{"email":"ann@example.com","password":"Wrong-Password-1"}'
refresh=$(post /api/v1/auth/login '{"email":"ann@example.com","password":"Tangerine-Lighthouse-42"}' \
  | sed 's/.*"refresh_token":"\([^"]*\)".*/\1/')
post /api/v1/auth/refresh "{\"refresh_token\":\"$refresh\"}" >/dev/null
# The same token again: a reuse, which lands in the review queue.
curl -s -o /dev/null -XPOST "$base/api/v1/auth/refresh" -H 'content-type: application/json' -d "{\"refresh_token\":\"$refresh\"}"
"$bin" summarize --date "$(date -u +%F)" >/dev/null

BASE_URL="$base" ADMIN_EMAIL=root@example.com ADMIN_PASSWORD="$password" SCREENSHOT=target/admin.png \
  node tests/browser/admin.mjs
