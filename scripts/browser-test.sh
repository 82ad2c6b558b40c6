#!/usr/bin/env bash
# The /admin page and the account console in headless Chromium (Debian's chromium, driven by playwright-core, with
# axe-core for accessibility and a DevTools virtual authenticator for passkeys):
# a scratch database with a staff user enrolled in TOTP and some audit events, the debug
# binary serving it, then tests/browser/admin.mjs. Installs what is missing (Debian's
# chromium, nodejs and npm; oathtool, the staff user's authenticator; zbar-tools and
# librsvg2-bin to decode the TOTP QR code; the npm packages playwright-core and axe-core), quietly: apt's output goes to target/apt-install.log.
set -euo pipefail
cd "$(dirname "$0")/.."
port="${BROWSER_TEST_PORT:-18181}"
sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
need() { command -v "$1" >/dev/null 2>&1; }
missing=()
need chromium || missing+=(chromium)
need oathtool || missing+=(oathtool)
need zbarimg || missing+=(zbar-tools)
need rsvg-convert || missing+=(librsvg2-bin)
need openssl || missing+=(openssl)
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
# Served by name: browsers refuse an IP address as a passkey's relying party.
export DATABASE_URL="$url" APP_ENV=development RUN_JOBS=false RUST_LOG=info BIND_ADDR="127.0.0.1:$port" \
  PUBLIC_BASE_URL="http://localhost:$port"
SQLX_OFFLINE=true cargo build -q
bin=target/debug/gatehouse
"$bin" migrate >/dev/null

# Keys interoperate with standard tools: OpenSSL reads what `keys generate` writes (mode
# 0600), and the server signs with a key that `openssl genpkey` made.
rm -f target/gatehouse-key.pem target/openssl-key.pem
"$bin" keys generate --out target/gatehouse-key.pem >/dev/null
if openssl pkey -in target/gatehouse-key.pem -noout 2>/dev/null && [ "$(stat -c %a target/gatehouse-key.pem)" = 600 ]; then
  echo "ok   openssl reads a key from gatehouse keys generate (mode 600)"
else
  echo "FAIL openssl cannot read the generated key, or its mode is not 600"; exit 1
fi
openssl genpkey -algorithm ed25519 -out target/openssl-key.pem 2>/dev/null
export JWT_SIGNING_KEY_FILE=target/openssl-key.pem
password="Correct-Horse-Battery-9"
GATEHOUSE_PASSWORD="$password" "$bin" createsuperuser --email root@example.com --username root >/dev/null
# The operator's path to an administering superuser: enrol TOTP at the shell, confirm it
# with a code from an independent authenticator (oathtool), sign in on /admin with the next one.
uri=$("$bin" mfa enroll --email root@example.com | grep '^otpauth://')
secret=$(sed 's/.*secret=\([A-Z2-7]*\).*/\1/' <<<"$uri")
"$bin" mfa confirm --email root@example.com --code "$(oathtool --totp -b "$secret")" > target/backup-codes.txt
# The next time step: the one used to confirm is spent (replay refused).
code=$(oathtool --totp -b "$secret" --now "$(date -u -d '+30 seconds' '+%Y-%m-%d %H:%M:%S UTC')")

"$bin" serve > target/browser-server.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
base="http://localhost:$port"
for _ in $(seq 100); do curl -sf "$base/healthz" >/dev/null && break; sleep 0.1; done
post() { curl -sf -XPOST "$base$1" -H 'content-type: application/json' -d "$2"; }

# The served OpenAPI document passes a standard validator (openapi-spec-validator, from
# PyPI, in a venv under target/; schemathesis runs in `make fuzz`).
scripts/py-venv.sh openapi-spec-validator >/dev/null
curl -sf "$base/api/v1/openapi.json" > target/openapi.json
if target/py-venv/bin/python -c 'import json, sys; from openapi_spec_validator import validate; validate(json.load(open(sys.argv[1])))' target/openapi.json; then
  echo "ok   the served OpenAPI document validates (openapi-spec-validator)"
else
  echo "FAIL the served OpenAPI document does not validate"; exit 1
fi
post /api/v1/auth/register '{"email":"ann@example.com","username":"ann","password":"Tangerine-Lighthouse-42"}' >/dev/null
curl -s -o /dev/null -XPOST "$base/api/v1/auth/login" -H 'content-type: application/json' \
  -d '{"email":"ann@example.com","password":"Wrong-Password-1"}'
refresh=$(post /api/v1/auth/login '{"email":"ann@example.com","password":"Tangerine-Lighthouse-42"}' \
  | sed 's/.*"refresh_token":"\([^"]*\)".*/\1/')
post /api/v1/auth/refresh "{\"refresh_token\":\"$refresh\"}" >/dev/null
# The same token again: a reuse, which lands in the review queue.
curl -s -o /dev/null -XPOST "$base/api/v1/auth/refresh" -H 'content-type: application/json' -d "{\"refresh_token\":\"$refresh\"}"
"$bin" summarize --date "$(date -u +%F)" >/dev/null

# The TOTP setup's QR code, rendered to PNG and read by a real decoder (zbar), is the very
# otpauth URI the setup returns.
access=$(post /api/v1/auth/login '{"email":"ann@example.com","password":"Tangerine-Lighthouse-42"}' \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')
curl -sf -XPOST "$base/api/v1/mfa/totp/setup" -H "authorization: Bearer $access" -H 'content-type: application/json' \
  -d '{"password":"Tangerine-Lighthouse-42"}' > target/totp-setup.json
python3 -c 'import json; d = json.load(open("target/totp-setup.json")); open("target/totp-qr.svg", "w").write(d["qr_svg"]); open("target/totp-uri.txt", "w").write(d["otpauth_uri"])'
rsvg-convert -w 600 -b white target/totp-qr.svg -o target/totp-qr.png
if [ "$(zbarimg --quiet --raw target/totp-qr.png 2>/dev/null)" = "$(cat target/totp-uri.txt)" ]; then
  echo "ok   the TOTP QR code decodes to its otpauth URI"
else
  echo "FAIL the TOTP QR code does not decode to its otpauth URI"; exit 1
fi

# For the users view: carl locked by five wrong passwords. For the approval queue: a
# second staff member, boss, and two pending MFA resets of ann's, one asked for by boss
# and one by root (which root may not approve).
post /api/v1/auth/register '{"email":"carl@example.com","username":"carl","password":"Tangerine-Lighthouse-42"}' >/dev/null
for _ in 1 2 3 4 5; do
  curl -s -o /dev/null -XPOST "$base/api/v1/auth/login" -H 'content-type: application/json' \
    -d '{"email":"carl@example.com","password":"Wrong-Password-1"}'
done
GATEHOUSE_PASSWORD="$password" "$bin" createsuperuser --email boss@example.com --username boss >/dev/null
for asker in boss root; do
  psql "$DATABASE_URL" -qc "INSERT INTO accounts_mfachangelog
      (user_id, action, change_reason, approval_required, approval_status, requested_by_id)
    SELECT (SELECT id FROM auth_user WHERE username = 'ann'), 'reset', 'asked by $asker', true, 'pending',
           (SELECT id FROM auth_user WHERE username = '$asker')"
done
BASE_URL="$base" ADMIN_EMAIL=root@example.com ADMIN_PASSWORD="$password" ADMIN_CODE="$code" SCREENSHOT=target/admin.png \
  ANN_ACCESS="$access" node tests/browser/admin.mjs
# The account console, walked by a new user (its own database and serving process).
scripts/console-walk.sh

# No log line of the run holds the TOTP secret or a backup code.
leaks=0
for secret_text in "$secret" $(grep -Eo '[0-9A-Z]{4}-[0-9A-Z]{4}' target/backup-codes.txt); do
  if grep -qF -- "$secret_text" target/browser-server.log; then echo "FAIL the server log holds a secret"; leaks=1; fi
done
[ "$leaks" = 0 ] && echo "ok   no secret or code in the server log ($(wc -l < target/browser-server.log) lines)"
exit "$leaks"
