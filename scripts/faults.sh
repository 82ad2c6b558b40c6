#!/usr/bin/env bash
# `make faults`: the fault drills of docs/operations.md, against a PostgreSQL cluster and
# `serve` processes this script starts and stops itself (never the machine's shared
# PostgreSQL). Results are printed and kept in target/faults-results.txt.
#  1. outage: /users/me and /readyz polled every 50 ms while the cluster is stopped (fast
#     shutdown) for OUTAGE_SECONDS (10) and started again: answers by status (no 500
#     allowed), the slowest answer, the time from the restart to the first success, and
#     the service's log lines meanwhile.
#  2. kill -9 under mixed load: registrations (each queues an email), logins and refresh
#     chains from parallel clients; `serve` is killed with SIGKILL mid-load and started
#     again; then every committed session, rotation and registration must have its audit
#     row and its email, and no message or job run may stay claimed.
#  3. TLS: the cluster restarted with a certificate from a CA made here; `serve` connects
#     with sslmode=verify-full (its connections seen encrypted in pg_stat_ssl), and a
#     client trusting another CA is refused.
#  4. backup and restore: a user with TOTP is dumped (pg_dump), restored into a fresh
#     cluster, `gatehouse migrate` is a no-op there, and the user signs in with password
#     and TOTP against the restored copy, with the same keys.
#  5. a streaming replica (pg_basebackup -R, another port): the admin audit lists read it
#     (its own scan counts and pg_stat_activity), and the primary while its replay is
#     paused past REPLICA_MAX_LAG_SECONDS, once it is promoted (a server not in recovery is
#     never read) and once it is stopped; no 5xx.
#  6. three `serve` processes on one database under mixed load (register, login, refresh
#     chains moving between instances), a real SMTP receiver (scripts/smtp-sink.py): each
#     message received once, each job period run once, one refresh token raced over the
#     three instances wins once, wrong passwords spread over them lock the account on all.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/faults-results.txt
mkdir -p target
: > "$out"
say() { echo "$*" | tee -a "$out"; }

command -v curl >/dev/null || { apt-get install -y -qq curl >&2 || sudo apt-get install -y -qq curl >&2; }
cargo build --release --bins -q 2>&1 | grep -v '^$' >&2 || true
bin=$PWD/target/release/gatehouse

pgbin() {
  if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then pg_config --bindir; return; fi
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}
bindir=$(pgbin)
[ -x "$bindir/initdb" ] || { echo "faults.sh: no PostgreSQL server binaries (initdb) on this machine" >&2; exit 2; }
as_owner() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/bash -c "$(printf '%q ' "$@")"; else "$@"; fi; }
if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then useradd --system --home /nonexistent postgres; fi

work=$(mktemp -d /tmp/gatehouse-faults.XXXXXX)
chmod 755 "$work"
pgport="${FAULTS_PG_PORT:-55432}"
port="${FAULTS_PORT:-18190}"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  as_owner "$bindir/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true
  as_owner "$bindir/pg_ctl" -D "$work/pg2" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/pg" && [ "$(id -u)" = 0 ] && chown postgres "$work/pg"
as_owner "$bindir/initdb" -D "$work/pg" -U postgres -A trust >/dev/null
pg_start() { as_owner "$bindir/pg_ctl" -D "$work/pg" -l "$work/pg/server.log" -w \
  -o "-p $pgport -k /tmp -c listen_addresses=127.0.0.1 -c fsync=on" start >/dev/null; }
pg_stop() { as_owner "$bindir/pg_ctl" -D "$work/pg" -m fast -w stop >/dev/null; }
pg_start
export DATABASE_URL="postgres://postgres@127.0.0.1:$pgport/gatehouse" APP_ENV=development
"$bin" migrate >/dev/null
key="$work/jwt.pem"
"$bin" keys generate --out "$key" >/dev/null

say "# $(date -u +%FT%TZ) on $(nproc) cores; PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') on 127.0.0.1:$pgport (private cluster)"
say "## 1. the database stopped under a polling client"
JWT_SIGNING_KEY_FILE="$key" BIND_ADDR="127.0.0.1:$port" RUN_JOBS=true LOG_FORMAT=json RUST_LOG=info \
  "$bin" serve > "$work/serve.log" 2>&1 &
pids+=($!)
base="http://127.0.0.1:$port"
for _ in $(seq 100); do curl -sf "$base/readyz" >/dev/null && break; sleep 0.1; done
curl -sf -XPOST "$base/api/v1/auth/register" -H 'content-type: application/json' \
  -d '{"email":"drill@example.com","username":"drill","password":"Correct-Horse-Battery-9"}' >/dev/null
token=$(curl -sf -XPOST "$base/api/v1/auth/login" -H 'content-type: application/json' \
  -d '{"email":"drill@example.com","password":"Correct-Horse-Battery-9"}' | sed 's/.*"access_token":"\([^"]*\)".*/\1/')

now() { date +%s.%N; }
poll() { # every 50 ms: "<time> <path> <status> <seconds>"
  while [ ! -e "$work/stop-polling" ]; do
    for path in /api/v1/users/me /readyz; do
      local t; t=$(now)
      echo "$t $path $(curl -s -o /dev/null -m 30 -w '%{http_code} %{time_total}' -H "authorization: Bearer $token" "$base$path")"
    done
    sleep 0.05
  done > "$work/poll.txt"
}
poll &
poller=$!
sleep 2
lines_before=$(wc -l < "$work/serve.log")
pg_stop
stopped=$(now)
sleep "${OUTAGE_SECONDS:-10}"
pg_start
started=$(now)
sleep 8
touch "$work/stop-polling"
wait $poller
lines_during=$(( $(wc -l < "$work/serve.log") - lines_before ))

awk -v s="$stopped" -v r="$started" '
  $1 >= s && $1 < r && $2 == "/api/v1/users/me" { n[$3]++; if ($4 > slow) slow = $4 }
  $1 >= s && $1 < r && $2 == "/readyz" { ready[$3]++ }
  $3 == 500 { e500++ }
  $1 >= r && $2 == "/api/v1/users/me" && $3 == 200 && !first { first = $1 - r }
  END {
    printf "outage of %.1f s: /users/me answered", r - s
    for (k in n) printf " %s x%d", k, n[k]
    printf "; slowest %.3f s; /readyz answered", slow
    for (k in ready) printf " %s x%d", k, ready[k]
    printf "\n500 answers over the whole drill: %d\n", e500
    printf "first /users/me 200 after the database accepted connections again: %.2f s\n", first
  }' "$work/poll.txt" | tee -a "$out"
say "service log lines during the outage and recovery: $lines_during ($(grep -c '"level":"ERROR"' "$work/serve.log" || true) at error level in the whole run)"
if awk '$3 == 500 {exit 1}' "$work/poll.txt"; then say "drill 1: passed"; else say "drill 1: FAILED (a 500)"; exit 1; fi
kill "${pids[@]}" 2>/dev/null || true
wait 2>/dev/null || true
pids=()

say "## 2. kill -9 of serve under mixed load"
serve() {
  JWT_SIGNING_KEY_FILE="$key" BIND_ADDR="127.0.0.1:$port" RUN_JOBS=true LOG_FORMAT=json RUST_LOG=warn \
    "$bin" serve >> "$work/serve2.log" 2>&1 &
  server=$!
  pids+=($server)
  for _ in $(seq 100); do curl -sf "$base/readyz" >/dev/null && break; sleep 0.1; done
}
serve
load() { # client number: registers, signs in, refreshes its chain, until stopped
  local n=$1 i=0 refresh body
  while [ ! -e "$work/stop-load" ]; do
    i=$((i + 1))
    curl -s -m 10 -XPOST "$base/api/v1/auth/register" -H 'content-type: application/json' \
      -d "{\"email\":\"u$n-$i@example.com\",\"username\":\"u${n}x$i\",\"password\":\"Correct-Horse-Battery-9\"}" >/dev/null || true
    body=$(curl -s -m 10 -XPOST "$base/api/v1/auth/login" -H 'content-type: application/json' \
      -d '{"email":"drill@example.com","password":"Correct-Horse-Battery-9"}' || true)
    refresh=$(echo "$body" | sed -n 's/.*"refresh_token":"\([^"]*\)".*/\1/p')
    for _ in 1 2 3 4 5; do
      [ -n "$refresh" ] || break
      body=$(curl -s -m 10 -XPOST "$base/api/v1/auth/refresh" -H 'content-type: application/json' \
        -d "{\"refresh_token\":\"$refresh\"}" || true)
      refresh=$(echo "$body" | sed -n 's/.*"refresh_token":"\([^"]*\)".*/\1/p')
    done
  done
}
rm -f "$work/stop-load"
clients=()
for n in 1 2 3 4; do load "$n" & clients+=($!); done
sleep "${LOAD_SECONDS:-6}"
kill -9 "$server"
say "serve killed with SIGKILL after ${LOAD_SECONDS:-6} s of load"
sleep 1
serve
sleep 3
touch "$work/stop-load"
wait "${clients[@]}" 2>/dev/null || true
psql_q() { psql "$DATABASE_URL" -Atc "$1"; }
# Give the outbox worker time to send what was queued, and any claim cut by the kill
# time to go stale (DeliveryConfig::claim, 120 s) and be sent again.
drain_outbox() { # waits up to $1 s for no email to be pending or claimed
  for _ in $(seq "$1"); do
    [ "$(psql "$DATABASE_URL" -Atc "SELECT count(*) FROM notifications_emailnotification
      WHERE status IN ('pending', 'sending')")" = 0 ] && return
    sleep 1
  done
}
drain_outbox 150
check() { # label, SQL counting violations
  local n; n=$(psql_q "$2")
  say "$1: $n"
  [ "$n" = 0 ] || failed=1
}
failed=0
say "committed: $(psql_q "SELECT count(*) FROM auth_user") users, $(psql_q "SELECT count(*) FROM accounts_session") sessions, \
$(psql_q "SELECT count(*) FROM accounts_refreshtokenrecord WHERE rotated_at IS NOT NULL") rotations, \
$(psql_q "SELECT count(*) FROM notifications_emailnotification") emails ($(psql_q "SELECT string_agg(status || ' ' || n, ', ') FROM (SELECT status, count(*) n FROM notifications_emailnotification GROUP BY 1) s"))"
check "sessions without their login audit row" "SELECT count(*) FROM accounts_session s WHERE NOT EXISTS
  (SELECT 1 FROM audit_log_sessionauditlog a WHERE a.session_id = s.id AND a.action = 'login')"
check "sessions whose rotations and refresh audit rows differ in number" "SELECT count(*) FROM accounts_session s WHERE
  (SELECT count(*) FROM accounts_refreshtokenrecord r WHERE r.session_id = s.id AND r.rotated_at IS NOT NULL)
  <> (SELECT count(*) FROM audit_log_sessionauditlog a WHERE a.session_id = s.id AND a.action = 'refresh')"
check "users registered without their audit row" "SELECT count(*) FROM auth_user u WHERE u.username <> 'drill' AND NOT EXISTS
  (SELECT 1 FROM accounts_auditlog a WHERE a.user_id = u.id AND a.action = 'registered')"
check "users registered without their verification email" "SELECT count(*) FROM auth_user u WHERE NOT EXISTS
  (SELECT 1 FROM notifications_emailnotification e WHERE e.user_id = u.id)"
check "emails still pending or claimed" "SELECT count(*) FROM notifications_emailnotification WHERE status IN ('pending', 'sending')"
check "job runs left running" "SELECT count(*) FROM audit_log_jobrun WHERE status = 'running' AND started_at < now() - interval '1 minute'"
if [ "$failed" = 0 ]; then say "drill 2: passed"; else say "drill 2: FAILED"; exit 1; fi
kill "${pids[@]}" 2>/dev/null || true
wait 2>/dev/null || true
pids=()

say "## 3. TLS to PostgreSQL with sslmode=verify-full"
tls="$work/tls"
mkdir -p "$tls"
openssl_q() { openssl "$@" >/dev/null 2>&1; }
openssl_q req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=gatehouse drill CA" -keyout "$tls/ca.key" -out "$tls/ca.crt"
openssl_q req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=another CA" -keyout "$tls/other.key" -out "$tls/other.crt"
openssl_q req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$tls/server.key" -out "$tls/server.csr"
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > "$tls/san.ext"
openssl_q x509 -req -in "$tls/server.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" -CAcreateserial -days 1 \
  -extfile "$tls/san.ext" -out "$tls/server.crt"
cp "$tls/server.crt" "$tls/server.key" "$work/pg/"
[ "$(id -u)" = 0 ] && chown postgres "$work/pg/server.crt" "$work/pg/server.key"
chmod 600 "$work/pg/server.key"
pg_stop
as_owner "$bindir/pg_ctl" -D "$work/pg" -l "$work/pg/server.log" -w \
  -o "-p $pgport -k /tmp -c listen_addresses=127.0.0.1 -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key" start >/dev/null
plain_url=$DATABASE_URL
export DATABASE_URL="$plain_url?sslmode=verify-full&sslrootcert=$tls/ca.crt"
"$bin" migrate >/dev/null
JWT_SIGNING_KEY_FILE="$key" BIND_ADDR="127.0.0.1:$port" RUN_JOBS=false LOG_FORMAT=json RUST_LOG=warn \
  "$bin" serve > "$work/serve3.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -sf "$base/readyz" >/dev/null && break; sleep 0.1; done
status=$(curl -s -o /dev/null -w '%{http_code}' -XPOST "$base/api/v1/auth/login" -H 'content-type: application/json' \
  -d '{"email":"drill@example.com","password":"Correct-Horse-Battery-9"}')
encrypted=$(psql "$plain_url" -Atc "SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
  WHERE a.datname = 'gatehouse' AND a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()")
say "login through a verify-full connection: $status; service connections encrypted / all: ${encrypted/|/ / }"
if DATABASE_URL="$plain_url?sslmode=verify-full&sslrootcert=$tls/other.crt" "$bin" migrate > "$work/wrong-ca.txt" 2>&1; then
  say "a client trusting another CA connected: FAILED"; exit 1
fi
say "a client trusting another CA is refused: $(grep -o -m1 -i 'invalid peer certificate[^)]*\|certificate[^,]*unknown[^,]*\|UnknownIssuer' "$work/wrong-ca.txt" || head -c 200 "$work/wrong-ca.txt")"
[ "$status" = 200 ] && [ "${encrypted%%|*}" = "${encrypted##*|}" ] && [ "${encrypted%%|*}" -gt 0 ] \
  && say "drill 3: passed" || { say "drill 3: FAILED"; exit 1; }
kill "${pids[@]}" 2>/dev/null || true
wait 2>/dev/null || true
pids=()
export DATABASE_URL=$plain_url

say "## 4. backup and restore"
# What must be kept with the database: the JWT signing key file and DATA_ENCRYPTION_KEY
# (without it the TOTP secrets and the outbox bodies cannot be read).
DATA_ENCRYPTION_KEY=$(head -c 32 /dev/urandom | base64)
export DATA_ENCRYPTION_KEY
serve_on() { # database URL
  DATABASE_URL="$1" JWT_SIGNING_KEY_FILE="$key" BIND_ADDR="127.0.0.1:$port" RUN_JOBS=false LOG_FORMAT=json \
    RUST_LOG=warn "$bin" serve >> "$work/serve4.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do curl -sf "$base/readyz" >/dev/null && break; sleep 0.1; done
}
json_field() { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"; }
serve_on "$plain_url"
curl -sf -XPOST "$base/api/v1/auth/register" -H 'content-type: application/json' \
  -d '{"email":"keeper@example.com","username":"keeper","password":"Correct-Horse-Battery-9"}' >/dev/null
access=$(curl -sf -XPOST "$base/api/v1/auth/login" -H 'content-type: application/json' \
  -d '{"email":"keeper@example.com","password":"Correct-Horse-Battery-9"}' | json_field access_token)
secret=$(curl -sf -XPOST "$base/api/v1/mfa/totp/setup" -H "authorization: Bearer $access" \
  -H 'content-type: application/json' -d '{"password":"Correct-Horse-Battery-9"}' | json_field secret)
curl -sf -XPOST "$base/api/v1/mfa/totp/confirm" -H "authorization: Bearer $access" -H 'content-type: application/json' \
  -d "{\"code\":\"$(oathtool --totp -b "$secret")\"}" >/dev/null
kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; pids=()
"$bindir/pg_dump" -Fc -f "$work/backup.dump" "$plain_url"
say "pg_dump: $(du -h "$work/backup.dump" | cut -f1) for $(psql "$plain_url" -Atc "SELECT count(*) FROM auth_user") users"

mkdir -p "$work/pg2" && [ "$(id -u)" = 0 ] && chown postgres "$work/pg2"
as_owner "$bindir/initdb" -D "$work/pg2" -U postgres -A trust >/dev/null
as_owner "$bindir/pg_ctl" -D "$work/pg2" -l "$work/pg2/server.log" -w \
  -o "-p $((pgport + 1)) -k /tmp -c listen_addresses=127.0.0.1" start >/dev/null
restored="postgres://postgres@127.0.0.1:$((pgport + 1))/gatehouse"
psql "${restored%/*}/postgres" -qc "CREATE DATABASE gatehouse"
"$bindir/pg_restore" --no-owner --exit-on-error -d "$restored" "$work/backup.dump"
before=$(psql "$restored" -Atc "SELECT count(*) FROM _sqlx_migrations")
DATABASE_URL="$restored" "$bin" migrate >/dev/null
after=$(psql "$restored" -Atc "SELECT count(*) FROM _sqlx_migrations")
say "restored into a fresh cluster; gatehouse migrate there: $before migrations before, $after after"
serve_on "$restored"
challenge=$(curl -sf -XPOST "$base/api/v1/auth/login" -H 'content-type: application/json' \
  -d '{"email":"keeper@example.com","password":"Correct-Horse-Battery-9"}' | json_field challenge_id)
# A TOTP code is accepted once per 30-second step: wait for the step after the one used
# to confirm the enrolment.
sleep $((30 - $(date +%s) % 30 + 1))
verified=$(curl -s -o "$work/verify.json" -w '%{http_code}' -XPOST "$base/api/v1/auth/mfa/verify" \
  -H 'content-type: application/json' \
  -d "{\"challenge_id\":\"$challenge\",\"method\":\"totp\",\"code\":\"$(oathtool --totp -b "$secret")\"}")
say "sign-in on the restored copy: password -> challenge ${challenge:+issued}, TOTP -> $verified $(json_field status < "$work/verify.json")"
as_owner "$bindir/pg_ctl" -D "$work/pg2" -m fast -w stop >/dev/null
[ "$before" = "$after" ] && [ "$verified" = 200 ] && say "drill 4: passed" || { say "drill 4: FAILED"; exit 1; }
kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; pids=()

json_of() { curl -s -XPOST "$1/api/v1/auth/login" -H 'content-type: application/json' \
  -d "{\"email\":\"$2\",\"password\":\"Correct-Horse-Battery-9\"}"; }

say "## 5. reports on a streaming replica"
replica_port=$((pgport + 2))
mkdir -p "$work/pg3" && chmod 700 "$work/pg3" && { [ "$(id -u)" != 0 ] || chown postgres "$work/pg3"; }
as_owner "$bindir/pg_basebackup" -h 127.0.0.1 -p "$pgport" -U postgres -D "$work/pg3" -R -X stream -c fast
as_owner "$bindir/pg_ctl" -D "$work/pg3" -l "$work/pg3/server.log" -w \
  -o "-p $replica_port -k /tmp -c listen_addresses=127.0.0.1" start >/dev/null
replica_url="postgres://postgres@127.0.0.1:$replica_port/gatehouse"
GATEHOUSE_PASSWORD="Correct-Horse-Battery-9" "$bin" createsuperuser --email auditor@example.com --username auditor >/dev/null
psql "$DATABASE_URL" -qc "INSERT INTO accounts_mfasettings (user_id, enforce_for_admin)
  SELECT id, false FROM auth_user WHERE username = 'auditor' ON CONFLICT (user_id) DO UPDATE SET enforce_for_admin = false"
say "replica: pg_basebackup -R of the primary on 127.0.0.1:$replica_port, in recovery: $(psql "$replica_url" -Atc 'SELECT pg_is_in_recovery()')"
DATABASE_REPLICA_URL="$replica_url" REPLICA_MAX_LAG_SECONDS=2 JWT_SIGNING_KEY_FILE="$key" BIND_ADDR="127.0.0.1:$port" \
  RUN_JOBS=false LOG_FORMAT=json RUST_LOG=info "$bin" serve > "$work/serve5.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -sf "$base/readyz" >/dev/null && break; sleep 0.1; done
admin=$(json_of "$base" auditor@example.com | json_field access_token)
lists() { # n: GET the admin session audit list n times; prints "statuses; slowest"
  for _ in $(seq "$1"); do
    curl -s -o /dev/null -w '%{http_code} %{time_total}\n' -H "authorization: Bearer $admin" "$base/api/v1/admin/audit/session"
  done | awk '{ n[$1]++; if ($2 > slow) slow = $2 } END { for (k in n) printf "%s x%d ", k, n[k]; printf "(slowest %.3f s)", slow }'
}
# Reads of the audit tables, as each server counts them (a standby keeps its own counts);
# "na" when the server is down. A backend publishes its counts when it goes idle, at most
# once a second, and otherwise within 10 s: the count after a step waits that out.
scans() { psql "$1" -Atc "SELECT COALESCE(sum(seq_scan + COALESCE(idx_scan, 0)), 0)
  FROM pg_stat_user_tables WHERE relname LIKE 'audit_log_sessionauditlog%'" 2>/dev/null || echo na; }
delta() { if [ "$1" = na ] || [ "$2" = na ]; then echo "n/a (down)"; else echo "+$(($2 - $1))"; fi; }
reads() { # label, n
  local r0 p0 answers
  r0=$(scans "$replica_url"); p0=$(scans "$DATABASE_URL")
  answers=$(lists "$2")
  sleep 11
  say "$1: $answers; audit-table scans on the replica $(delta "$r0" "$(scans "$replica_url")"), on the primary $(delta "$p0" "$(scans "$DATABASE_URL")")"
  [[ "$answers" != *"500 "* ]] && [[ "$answers" != *"503 "* ]] || failed=1
}
failed=0
for _ in $(seq 50); do grep -q 'read replica is in use' "$work/serve5.log" && break; sleep 0.1; done
reads "20 admin audit lists, replica streaming" 20
say "the replica's pg_stat_activity: $(psql "$replica_url" -Atc "SELECT count(*) || ' connection(s) of ' || application_name || ', last query: ' || left(regexp_replace(max(query), '\s+', ' ', 'g'), 60)
  FROM pg_stat_activity WHERE application_name = 'gatehouse-reports' GROUP BY application_name")"
psql "$replica_url" -qAtc "SELECT pg_wal_replay_pause()" >/dev/null
json_of "$base" drill@example.com >/dev/null   # a write the paused replica will not replay
sleep 4
reads "20 lists with the replica's replay paused (lag past REPLICA_MAX_LAG_SECONDS=2)" 20
psql "$replica_url" -qAtc "SELECT pg_wal_replay_resume()" >/dev/null
for _ in $(seq 50); do [ "$(grep -c 'read replica is in use' "$work/serve5.log")" -ge 2 ] && break; sleep 0.1; done
reads "20 lists after replay resumed" 20
# Promoted (split off from the primary): reachable, current, but no copy any more.
as_owner "$bindir/pg_ctl" -D "$work/pg3" -w promote >/dev/null
for _ in $(seq 50); do grep -q 'not in recovery' "$work/serve5.log" && break; sleep 0.1; done
reads "20 lists with the replica promoted (not in recovery: never read)" 20
as_owner "$bindir/pg_ctl" -D "$work/pg3" -m fast -w stop >/dev/null
reads "20 lists with the replica stopped" 20
say "service log: $(grep -o 'the read replica[^"]*' "$work/serve5.log" | sort | uniq -c | awk '{c=$1; $1=""; printf "%s x%d;", $0, c}')"
say "writes refused as read-only in the service log: $(grep -c 'read-only' "$work/serve5.log" || true)"
if [ "$failed" = 0 ]; then say "drill 5: passed"; else say "drill 5: FAILED"; exit 1; fi
kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; pids=()

say "## 6. three serve processes on one database under mixed load"
smtp_port=$((port + 20))
python3 scripts/smtp-sink.py "$smtp_port" "$work/mail.txt" &
pids+=($!)
# The earlier drills' instances claimed this period of each job: start from none, so the
# three instances below race for it.
psql "$DATABASE_URL" -qc "DELETE FROM audit_log_jobrun"
drill_start=$(psql "$DATABASE_URL" -Atc "SELECT now()")
bases=()
for i in 0 1 2; do
  SMTP_URL="smtp://127.0.0.1:$smtp_port" JWT_SIGNING_KEY_FILE="$key" BIND_ADDR="127.0.0.1:$((port + 10 + i))" \
    RUN_JOBS=true RATE_LIMIT_REGISTER_PER_HOUR=100000 LOG_FORMAT=json RUST_LOG=warn "$bin" serve > "$work/serve6-$i.log" 2>&1 &
  pids+=($!)
  bases+=("http://127.0.0.1:$((port + 10 + i))")
done
for b in "${bases[@]}"; do for _ in $(seq 100); do curl -sf "$b/readyz" >/dev/null && break; sleep 0.1; done; done
mixed() { # client number: each step on the next instance; every answer's status is kept
  local n=$1 i=0 refresh body
  post() { # base, path, JSON body: prints the body, appends the status to the client's file
    local answer
    answer=$(curl -s -m 10 -w '\n%{http_code}' -XPOST "$1$2" -H 'content-type: application/json' -d "$3" || echo)
    echo "${answer##*$'\n'}" >> "$work/mixed-$n.txt"
    echo "${answer%$'\n'*}"
  }
  while [ ! -e "$work/stop-mixed" ]; do
    i=$((i + 1))
    post "${bases[$(( (n + i) % 3 ))]}" /api/v1/auth/register \
      "{\"email\":\"m$n-$i@example.com\",\"username\":\"m${n}x$i\",\"password\":\"Correct-Horse-Battery-9\"}" >/dev/null
    body=$(post "${bases[$(( (n + i + 1) % 3 ))]}" /api/v1/auth/login \
      '{"email":"drill@example.com","password":"Correct-Horse-Battery-9"}')
    refresh=$(echo "$body" | json_field refresh_token)
    for k in 0 1 2; do
      [ -n "$refresh" ] || break
      refresh=$(post "${bases[$k]}" /api/v1/auth/refresh "{\"refresh_token\":\"$refresh\"}" | json_field refresh_token)
    done
  done
}
rm -f "$work/stop-mixed"
clients=()
for n in 1 2 3 4; do mixed "$n" & clients+=($!); done
sleep "${MIXED_SECONDS:-20}"
touch "$work/stop-mixed"
wait "${clients[@]}" 2>/dev/null || true

# One-time secret: one refresh token sent 9 times at once, 3 to each instance.
refresh=$(json_of "${bases[0]}" drill@example.com | json_field refresh_token)
for k in 0 1 2 0 1 2 0 1 2; do
  curl -s -o /dev/null -w '%{http_code}\n' -XPOST "${bases[$k]}/api/v1/auth/refresh" -H 'content-type: application/json' \
    -d "{\"refresh_token\":\"$refresh\"}" &
done > "$work/race.txt"
wait_for_race() { for _ in $(seq 100); do [ "$(wc -l < "$work/race.txt")" -ge 9 ] && return; sleep 0.1; done; }
wait_for_race
race=$(sort "$work/race.txt" | uniq -c | awk '{printf "%s x%d ", $2, $1}')
say "one refresh token, 9 concurrent requests over the 3 instances: $race"
[ "$(grep -c '^200$' "$work/race.txt")" = 1 ] || failed=1

# Lockout: wrong passwords spread over the instances lock the account on all of them.
curl -s -o /dev/null -XPOST "${bases[0]}/api/v1/auth/register" -H 'content-type: application/json' \
  -d '{"email":"locky@example.com","username":"locky","password":"Correct-Horse-Battery-9"}'
lock=""
for k in 0 1 2 0 1 2 0; do
  lock="$lock $(curl -s -o /dev/null -w '%{http_code}' -XPOST "${bases[$k]}/api/v1/auth/login" -H 'content-type: application/json' \
    -d '{"email":"locky@example.com","password":"Wrong-Horse-Battery-0"}')"
done
right=""
for k in 0 1 2; do
  right="$right $(curl -s -o /dev/null -w '%{http_code}' -XPOST "${bases[$k]}/api/v1/auth/login" -H 'content-type: application/json' \
    -d '{"email":"locky@example.com","password":"Correct-Horse-Battery-9"}')"
done
say "lockout: 7 wrong passwords round the instances:$lock; then the right one on each:$right"
[ "$lock" = " 401 401 401 401 401 429 429" ] && [ "$right" = " 429 429 429" ] || failed=1

drain_outbox 120
sleep 1
# The Message-ID is the outbox row's id: compare what arrived with what the rows say.
sed 's/^<\([^@]*\)@.*/\1/' "$work/mail.txt" | cut -f1 > "$work/mail-ids.txt"
mail=$(psql "$DATABASE_URL" -qAt <<SQL
CREATE TEMP TABLE received (id uuid);
\copy received FROM '$work/mail-ids.txt'
SELECT (SELECT count(*) FROM received) || ' ' || (SELECT count(DISTINCT id) FROM received) || ' '
    || (SELECT count(*) FROM notifications_emailnotification e WHERE e.created_at >= '$drill_start'
          AND NOT EXISTS (SELECT 1 FROM received r WHERE r.id = e.id)) || ' '
    || (SELECT count(*) FROM received r WHERE NOT EXISTS
          (SELECT 1 FROM notifications_emailnotification e WHERE e.id = r.id AND e.status = 'sent'));
SQL
)
read -r received distinct missing unknown <<< "$(echo "$mail" | tail -n 1)"
say "outbox: the SMTP receiver got $received messages, $distinct distinct Message-IDs; emails queued during the drill and not received: $missing; received but not marked sent: $unknown"
[ "$received" = "$distinct" ] && [ "$missing" = 0 ] && [ "$unknown" = 0 ] && [ "$received" -gt 0 ] || failed=1
say "job runs since the drill began, by kind and status: $(psql "$DATABASE_URL" -Atc "SELECT string_agg(kind || ' ' || status || ' ' || n, ', ')
  FROM (SELECT kind, status, count(*) n FROM audit_log_jobrun WHERE started_at >= '$drill_start' GROUP BY 1, 2 ORDER BY 1, 2) s")"
for k in 0 1 2; do
  say "  instance $k's job counters: $(curl -s "${bases[$k]}/metrics" | grep -E '^[a-z_]*job_runs_total\{' \
    | grep -E 'cleanup|partitions' | sed 's/^[a-z_]*job_runs_total//' | tr '\n' ' ')"
done
# Scheduled jobs claim (kind, period); the summary's period is its day (a later instance
# records a skipped run).
dup=$(psql "$DATABASE_URL" -Atc "SELECT count(*) FROM (SELECT kind, COALESCE(period_start::date, target_date)
  FROM audit_log_jobrun WHERE started_at >= '$drill_start' AND status IN ('running', 'succeeded')
   AND (period_start IS NOT NULL OR kind = 'audit_summary') GROUP BY kind, period_start, target_date HAVING count(*) > 1) d")
ran=$(psql "$DATABASE_URL" -Atc "SELECT count(DISTINCT kind) FROM audit_log_jobrun
  WHERE started_at >= '$drill_start' AND kind IN ('cleanup', 'partitions') AND status = 'succeeded'")
say "periods run more than once: $dup; scheduled kinds that ran in the drill: $ran of 2"
[ "$dup" = 0 ] && [ "$ran" = 2 ] || failed=1
say "load: $(psql "$DATABASE_URL" -Atc "SELECT count(*) FROM auth_user WHERE date_joined >= '$drill_start'") registrations, \
$(psql "$DATABASE_URL" -Atc "SELECT count(*) FROM accounts_session WHERE created_at >= '$drill_start'") sessions, \
$(psql "$DATABASE_URL" -Atc "SELECT count(*) FROM accounts_refreshtokenrecord WHERE rotated_at >= '$drill_start'") rotations; \
answers $(cat "$work"/mixed-*.txt | sort | uniq -c | awk '{printf "%s x%d ", $2, $1}')"
[ -z "$(cat "$work"/mixed-*.txt | grep -v '^[234]')" ] || failed=1
if [ "$failed" = 0 ]; then say "drill 6: passed"; else say "drill 6: FAILED"; exit 1; fi
