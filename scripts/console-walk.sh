#!/usr/bin/env bash
# The account console walk (tests/browser/console.mjs) against its own scratch database and
# a second serving process with the jobs on (mail delivery, exports) and SMTP pointed at the
# walk's capture server. Called by scripts/browser-test.sh, which installed what it needs
# and built the binary; screenshots land in target/console/.
set -euo pipefail
cd "$(dirname "$0")/.."
port="${CONSOLE_TEST_PORT:-18183}"
smtp_port="${CONSOLE_SMTP_PORT:-18125}"
bin=target/debug/gatehouse
url=$(scripts/db.sh url gatehouse_console)
psql "${url%/*}/postgres" -qc "DROP DATABASE IF EXISTS gatehouse_console WITH (FORCE)" -c "CREATE DATABASE gatehouse_console" >/dev/null
export DATABASE_URL="$url" APP_ENV=development RUN_JOBS=true RUST_LOG=info BIND_ADDR="127.0.0.1:$port" \
  PUBLIC_BASE_URL="http://localhost:$port" SMTP_URL="smtp://127.0.0.1:$smtp_port" JWT_SIGNING_KEY_FILE=target/openssl-key.pem
"$bin" migrate >/dev/null
"$bin" serve > target/console-server.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
base="http://localhost:$port"
for _ in $(seq 100); do curl -sf "$base/healthz" >/dev/null && break; sleep 0.1; done
rm -rf target/console
BASE_URL="$base" SMTP_PORT="$smtp_port" SHOTS=target/console node tests/browser/console.mjs
