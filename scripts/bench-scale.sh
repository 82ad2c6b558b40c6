#!/usr/bin/env bash
# `make bench-scale`: the service at a deployment's size against the same service at
# 20,000 users, in one run. Each population is built with SQL (scripts/bench/scale.sql)
# into a template database kept between runs (rebuilt when its parameters change, or with
# SCALE_REBUILD=1), and each run measures on a fresh copy of it:
#   - login, whoami, /users/me (c=32) and refresh (c=8 over 32 chains) under wrk;
#   - QUIET_SECONDS (60) of the mixed load (benches/mixed.rs: logins, MFA sign-ins with
#     TOTP, whoami, /users/me, refresh chains, the admin audit list) alone; then
#     MIXED_SECONDS (90) of it again while the jobs run by hand: the daily summary of
#     yesterday (the busiest full day), the cleanup, and a retention drop of the session
#     table's oldest month; each job's time;
#   - every lock wait of the run (pg_locks.waitstart, sampled every 20 ms): who waited,
#     behind whom, how long;
#   - the database's size and the service's RSS over the mixed load.
# Large population: SCALE_USERS (1,000,000), SCALE_CURRENT session events this month
# (10,000,000), SCALE_MONTH in each of the 11 months before (1,500,000); the device, MFA
# and link tables get 40/25/15% of those: about 38 M audit rows, ~25 GB with the copy
# (twice that on disk while a copy is made). SCALE_SIZES=small|large runs one.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${BENCH_SECONDS:-10}"
mixed_seconds="${MIXED_SECONDS:-90}"
quiet_seconds="${QUIET_SECONDS:-60}"
port="${BENCH_PORT:-18095}"
out=target/bench-scale-results.txt
mkdir -p target
: > "$out"
say() { echo "$*" | tee -a "$out"; }
command -v wrk >/dev/null || { apt-get install -y -qq wrk >&2 || sudo apt-get install -y -qq wrk >&2; }

root=$(scripts/db.sh url postgres)
server_url=${root%/*}
cargo build --release --bins --benches -q 2>&1 | grep -v '^$' >&2 || true
bin=target/release/gatehouse
key=target/bench-jwt.pem
[ -f "$key" ] || "$bin" keys generate --out "$key" >/dev/null
export APP_ENV=development JWT_SIGNING_KEY_FILE="$key" RUN_JOBS=false RATE_LIMIT_REGISTER_PER_HOUR=100000 LOG_FORMAT=json
unset RUST_LOG LOG_QUEUE_LINES
hz=$(getconf CLK_TCK)

# Builds (or keeps) the template of a population: name users current month.
template() {
  local name=$1 users=$2 current=$3 month=$4 tpl="gatehouse_scale_${1}_tpl" want have t0
  want="users=$users current=$current month=$month $(sha256sum < scripts/bench/scale.sql | cut -c1-12)"
  have=$(psql "$server_url/postgres" -Atc "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '$tpl'")
  if [ "$have" = "$want" ] && [ "${SCALE_REBUILD:-0}" != 1 ]; then
    # Migrations since it was built are applied to it once, not to every copy.
    DATABASE_URL="$server_url/$tpl" "$bin" migrate >/dev/null
    say "$name population: template $tpl kept ($want)"
    return
  fi
  t0=$(date +%s)
  psql "$server_url/postgres" -qc "DROP DATABASE IF EXISTS $tpl WITH (FORCE)" -c "CREATE DATABASE $tpl" >/dev/null
  DATABASE_URL="$server_url/$tpl" "$bin" migrate >/dev/null
  psql "$server_url/$tpl" -q -v users="$users" -v current="$current" -v month="$month" \
    -f scripts/bench/scale.sql > "target/scale-$name-build.log"
  # As autovacuum would leave it: hint bits set, visibility map and statistics current.
  psql "$server_url/$tpl" -qc "VACUUM (ANALYZE)"
  psql "$server_url/postgres" -qc "COMMENT ON DATABASE $tpl IS '$want'"
  say "$name population: built in $(( $(date +%s) - t0 )) s"
}

RPS=0 P99=0
wrk_run() { # name, connections, script
  local file="target/wrk-scale-${1//[^a-z0-9=]/_}.txt"
  wrk -t2 -c"$2" -d"${seconds}s" --latency -s "scripts/bench/$3" "$base" > "$file"
  RPS=$(awk '/Requests\/sec/ {print $2}' "$file")
  P99=$(awk '$1=="99%" {print $2}' "$file")
  say "  $1: $RPS req/s, p99 $P99 ($(grep -Eo 'Non-2xx.*|Socket errors.*' "$file" || echo 'no errors'))"
}
timed() { # label, command...; prints the seconds taken
  local t0 t1
  t0=$(date +%s.%N)
  "${@:2}" > "target/scale-job.log" 2>&1 || echo "  ($1 failed: $(tail -1 target/scale-job.log))"
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}'
}

declare -A R
measure() { # name
  local name=$1 db="gatehouse_scale_$1" t0 server sampler mixed yesterday
  t0=$(date +%s)
  psql "$server_url/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" \
    -c "CREATE DATABASE $db TEMPLATE gatehouse_scale_${name}_tpl STRATEGY FILE_COPY" >/dev/null
  export DATABASE_URL="$server_url/$db"
  "$bin" migrate >/dev/null
  say "## $name: $(psql "$DATABASE_URL" -Atc "SELECT to_char((SELECT count(*) FROM auth_user), 'FM9,999,999') || ' users, ' ||
      to_char((SELECT count(*) FROM accounts_session), 'FM9,999,999') || ' sessions, ' ||
      to_char((SELECT count(*) FROM accounts_refreshtokenrecord), 'FM99,999,999') || ' refresh records, ' ||
      to_char((SELECT count(*) FROM accounts_device), 'FM9,999,999') || ' devices, ' ||
      to_char((SELECT sum(c.reltuples) FROM pg_class c JOIN pg_inherits i ON i.inhrelid = c.oid
                WHERE i.inhparent::regclass::text LIKE 'audit_log_%auditlog'), 'FM999,999,999') || ' audit rows (estimate); database ' ||
      pg_size_pretty(pg_database_size(current_database()))") (copied in $(( $(date +%s) - t0 )) s)"
  R[$name,size]=$(psql "$DATABASE_URL" -Atc "SELECT pg_size_pretty(pg_database_size(current_database()))")
  R[$name,month]=$(psql "$DATABASE_URL" -Atc "SELECT to_char(count(*), 'FM99,999,999') FROM audit_log_sessionauditlog
      WHERE created_at >= date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'")
  BIND_ADDR="127.0.0.1:$port" "$bin" serve > "target/bench-scale-$name-server.log" 2>&1 &
  server=$!
  base="http://127.0.0.1:$port"
  for _ in $(seq 100); do curl -sf "$base/healthz" >/dev/null && break; sleep 0.1; done
  curl -sf -XPOST "$base/api/v1/auth/register" -H 'content-type: application/json' \
    -d '{"email":"bench@example.com","username":"bench","password":"Correct-Horse-Battery-9"}' >/dev/null
  local token
  token=$(curl -sf -XPOST "$base/api/v1/auth/login" -H 'content-type: application/json' \
    -d '{"email":"bench@example.com","password":"Correct-Horse-Battery-9"}' | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
  GATEHOUSE_PASSWORD="Correct-Horse-Battery-9" "$bin" createsuperuser --email gateway@example.com --username gateway >/dev/null

  wrk_run "login c=4" 4 login.lua; R[$name,login]=$RPS
  TOKEN=$token wrk_run "whoami c=32" 32 whoami.lua; R[$name,whoami]=$RPS
  TOKEN=$token wrk_run "users/me c=32" 32 me.lua; R[$name,me]=$RPS
  local chains="" i email
  for i in $(seq 32); do
    email="wrkchain$i@example.com"
    curl -sf -XPOST "$base/api/v1/auth/register" -H 'content-type: application/json' \
      -d "{\"email\":\"$email\",\"username\":\"wrkchain$i\",\"password\":\"Correct-Horse-Battery-9\"}" >/dev/null
    chains="$chains $(curl -sf -XPOST "$base/api/v1/auth/login" -H 'content-type: application/json' \
      -d "{\"email\":\"$email\",\"password\":\"Correct-Horse-Battery-9\"}" | sed 's/.*"refresh_token":"\([^"]*\)".*/\1/')"
  done
  REFRESH_TOKENS="$chains" WRK_THREADS=2 wrk_run "refresh c=8 over 32 chains" 8 refresh.lua; R[$name,refresh]=$RPS

  say "  mixed load alone, $quiet_seconds s:"
  BASE="$base" SERVER_PID=$server MIXED_SECONDS="$quiet_seconds" MIXED_USERS=quiet \
    cargo bench -q --bench mixed 2>/dev/null > "target/scale-$name-quiet.txt"
  sed 's/^/  /' "target/scale-$name-quiet.txt" | tee -a "$out"
  for kind in "MFA sign-in" "admin audit list" "whoami" "users/me" "refresh" "login"; do
    R[$name,q_$kind]=$(grep -m1 "^  $kind" "target/scale-$name-quiet.txt" | sed 's/.*p50 \([0-9.]*\) ms, p99 \([0-9.]*\) ms.*/\1 \/ \2/')
  done
  R[$name,q_rss]=$(grep -o 'RSS after warm-up.*' "target/scale-$name-quiet.txt" | sed 's/RSS after warm-up (10 s on) //')

  # Every lock wait from here on, sampled every 20 ms.
  printf '%s \\watch 0.02\n' "SELECT to_char(clock_timestamp(), 'HH24:MI:SS.MS'), l.pid,
      round(extract(epoch FROM clock_timestamp() - l.waitstart) * 1000)::int,
      left(regexp_replace(a.query, '\\s+', ' ', 'g'), 70),
      (SELECT string_agg(left(regexp_replace(b.query, '\\s+', ' ', 'g'), 70), ' / ') FROM pg_stat_activity b
        WHERE b.pid = ANY (pg_blocking_pids(l.pid)))
    FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
   WHERE NOT l.granted AND l.waitstart IS NOT NULL AND a.datname = current_database()" |
    psql "$DATABASE_URL" -AtF '|' > "target/scale-$name-lockwaits.txt" 2>/dev/null &
  sampler=$!

  say "  mixed load, $mixed_seconds s, with the jobs run by hand during it:"
  BASE="$base" SERVER_PID=$server MIXED_SECONDS="$mixed_seconds" MIXED_USERS=jobs \
    cargo bench -q --bench mixed 2>/dev/null > "target/scale-$name-mixed.txt" &
  mixed=$!
  # The mixed bench makes its users first (~10 s), then loads for MIXED_SECONDS.
  sleep $((10 + mixed_seconds / 6))
  yesterday=$(date -u -d yesterday +%F)
  R[$name,summary]=$(timed summary "$bin" summarize --date "$yesterday")
  R[$name,summary_rows]=$(psql "$DATABASE_URL" -Atc "SELECT to_char(count(*), 'FM9,999,999') FROM audit_log_auditlogsummary WHERE date = '$yesterday'")
  R[$name,day_events]=$(psql "$DATABASE_URL" -Atc "SELECT to_char(sum(total_events), 'FM99,999,999') FROM audit_log_auditlogsummary WHERE date = '$yesterday'")
  say "    daily summary of $yesterday (${R[$name,day_events]} events, ${R[$name,summary_rows]} users): ${R[$name,summary]} s"
  sleep $((mixed_seconds / 6))
  R[$name,cleanup]=$(timed cleanup "$bin" cleanup)
  R[$name,cleanup_rows]=$(psql "$DATABASE_URL" -Atc "SELECT rows_affected FROM audit_log_jobrun WHERE kind = 'cleanup' ORDER BY started_at DESC LIMIT 1")
  say "    cleanup: ${R[$name,cleanup]} s, ${R[$name,cleanup_rows]} rows ($(psql "$DATABASE_URL" -Atc "SELECT details FROM audit_log_jobrun WHERE kind = 'cleanup' ORDER BY started_at DESC LIMIT 1"))"
  sleep $((mixed_seconds / 6))
  # The session table keeps 11 months: its oldest month goes.
  local oldest
  oldest=$(psql "$DATABASE_URL" -Atc "SELECT c.relname || ' (' || to_char(c.reltuples, 'FM99,999,999') || ' rows)' FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
      WHERE i.inhparent = 'audit_log_sessionauditlog'::regclass ORDER BY c.relname LIMIT 1")
  psql "$DATABASE_URL" -qc "INSERT INTO audit_log_retentionpolicy (table_name, months_kept) VALUES ('audit_log_sessionauditlog', 11)"
  R[$name,drop]=$(timed retention "$bin" partitions prune)
  say "    retention drop of $oldest: ${R[$name,drop]} s ($(tr '\n' ' ' < target/scale-job.log | cut -c1-160))"
  wait $mixed || true
  kill $sampler 2>/dev/null || true
  sed 's/^/  /' "target/scale-$name-mixed.txt" | tee -a "$out"
  for kind in "MFA sign-in" "admin audit list" "whoami" "users/me" "refresh" "login"; do
    R[$name,m_$kind]=$(grep -m1 "^  $kind" "target/scale-$name-mixed.txt" | sed 's/.*p50 \([0-9.]*\) ms, p99 \([0-9.]*\) ms.*/\1 \/ \2/')
  done
  R[$name,rss]=$(grep -o 'RSS after warm-up.*' "target/scale-$name-mixed.txt" | sed 's/RSS after warm-up (10 s on) //')
  R[$name,5xx]=$(grep -o 'mixed load: [0-9]* answers' "target/scale-$name-mixed.txt" | grep -o '[0-9]*')
  # Lock waits: the longest of each waiter, and every one over 100 ms with its blocker.
  R[$name,lockmax]=$(awk -F'|' '$3 > m {m = $3} END {print m + 0}' "target/scale-$name-lockwaits.txt")
  say "  lock waits: longest ${R[$name,lockmax]} ms; over 100 ms:"
  awk -F'|' '$3 > 100 {k = $2 "|" $4; if ($3 > w[k]) {w[k] = $3; b[k] = $5}} END {for (k in w) printf "    %s ms: %s <- %s\n", w[k], k, b[k]}' \
    "target/scale-$name-lockwaits.txt" | sort -rn | head -10 | tee -a "$out"
  kill $server 2>/dev/null || true
  wait $server 2>/dev/null || true
  psql "$server_url/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
}

say "# bench-scale $(date -u +%FT%TZ) on $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem/ {print $2}') GiB"
sizes="${SCALE_SIZES:-small large}"
for s in $sizes; do
  case $s in
    small) template small 20000 200000 30000 ;;
    large) template large "${SCALE_USERS:-1000000}" "${SCALE_CURRENT:-10000000}" "${SCALE_MONTH:-1500000}" ;;
  esac
done
for s in $sizes; do measure "$s"; done

if [ "$sizes" = "small large" ]; then
  say ""
  say "| measure | 20 k users | 1 M users | 1 M / 20 k |"
  say "|---|---|---|---|"
  row() { # label key how: rate (1 M's share of 20 k's), time (1 M's multiple), - (none)
    local a=${R[small,$2]:-} b=${R[large,$2]:-}
    say "| $1 | $a | $b | $(awk -v a="${a%% *}" -v b="${b%% *}" -v h="$3" 'BEGIN {
      gsub(",", "", a); gsub(",", "", b)
      if (h != "-" && a > 0 && b > 0) printf "%.2f%s", b / a, (h == "rate" ? " of the rate" : "x") }') |"
  }
  row "database size" size -
  row "session events this month" month -
  row "login c=4 (req/s)" login rate
  row "whoami c=32 (req/s)" whoami rate
  row "/users/me c=32 (req/s)" me rate
  row "refresh c=8, 32 chains (req/s)" refresh rate
  row "mixed alone: MFA sign-in p50 / p99 (ms)" "q_MFA sign-in" time
  row "mixed alone: admin audit list p50 / p99 (ms)" "q_admin audit list" time
  row "mixed alone: login p50 / p99 (ms)" q_login time
  row "mixed alone: whoami p50 / p99 (ms)" q_whoami time
  row "mixed alone: /users/me p50 / p99 (ms)" "q_users/me" time
  row "mixed alone: refresh p50 / p99 (ms)" q_refresh time
  row "mixed alone: RSS (after 10 s)" q_rss -
  row "with jobs: MFA sign-in p50 / p99 (ms)" "m_MFA sign-in" time
  row "with jobs: admin audit list p50 / p99 (ms)" "m_admin audit list" time
  row "with jobs: login p50 / p99 (ms)" m_login time
  row "with jobs: whoami p50 / p99 (ms)" m_whoami time
  row "with jobs: /users/me p50 / p99 (ms)" "m_users/me" time
  row "with jobs: refresh p50 / p99 (ms)" m_refresh time
  row "with jobs: answers 5xx or failed" 5xx -
  row "daily summary of yesterday (s)" summary time
  row "cleanup (s)" cleanup time
  row "retention drop (s)" drop time
  row "longest lock wait (ms)" lockmax -
  row "with jobs: RSS (after 10 s)" rss -
fi
echo "results: $out" >&2
