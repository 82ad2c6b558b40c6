#!/usr/bin/env bash
# Login throughput of two release binaries, interleaved (A B B A A B ...), on this machine:
#   scripts/bench-ab.sh BEFORE_BINARY AFTER_BINARY
# On a shared 2-core box a single before/after pair moves by ±10% with whatever else runs;
# alternating the two in short rounds puts both under the same drift, so the medians
# compare. Each binary gets its own database (migrated by itself) and bench user. Per round:
# login req/s at c=CONNS (4) and PostgreSQL CPU per login. ROUNDS (default 6), BENCH_SECONDS (10).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 2 ] || { echo "usage: $0 BEFORE_BINARY AFTER_BINARY" >&2; exit 2; }
command -v wrk >/dev/null || { echo "installing wrk" >&2; apt-get install -y -qq wrk >&2 || sudo apt-get install -y -qq wrk >&2; }
bins=("$1" "$2")
rounds="${ROUNDS:-6}"
seconds="${BENCH_SECONDS:-10}"
conns="${CONNS:-4}"
port="${BENCH_PORT:-18090}"
key=target/bench-jwt.pem
mkdir -p target
[ -f "$key" ] || APP_ENV=development "${bins[1]}" keys generate --out "$key" >/dev/null
hz=$(getconf CLK_TCK)
ticks() { for p in "$@"; do awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || true; done | awk '{s += $1} END {print s + 0}'; }

urls=()
for i in 0 1; do
  url=$(scripts/db.sh url "gatehouse_ab_$i")
  psql "${url%/*}/postgres" -qc "DROP DATABASE IF EXISTS gatehouse_ab_$i WITH (FORCE)" -c "CREATE DATABASE gatehouse_ab_$i" >/dev/null
  DATABASE_URL="$url" APP_ENV=development "${bins[$i]}" migrate >/dev/null
  urls+=("$url")
done

# One round of binary $1: serve, register (first time), login under wrk, stop.
round() {
  local i=$1 url=${urls[$1]} base="http://127.0.0.1:$port" srv pids pg0 pg1 rps n
  DATABASE_URL="$url" APP_ENV=development JWT_SIGNING_KEY_FILE="$key" BIND_ADDR="127.0.0.1:$port" RUN_JOBS=false \
    LOG_FORMAT=json RUST_LOG=warn "${bins[$i]}" serve > "target/bench-ab-$i.log" 2>&1 &
  srv=$!
  trap "kill $srv 2>/dev/null || true" EXIT
  for _ in $(seq 50); do curl -sf "$base/healthz" >/dev/null && break; sleep 0.1; done
  curl -s -o /dev/null -XPOST "$base/api/v1/auth/register" -H 'content-type: application/json' \
    -d '{"email":"bench@example.com","username":"bench","password":"Correct-Horse-Battery-9"}'
  # The machine's PostgreSQL may run without autovacuum (this one does); a deployment's
  # would have analyzed the tables. Without it the planner knows nothing of the sessions
  # table's size and plans the login's history lookup as a scan of all of it.
  curl -s -o /dev/null -XPOST "$base/api/v1/auth/login" -H 'content-type: application/json' \
    -d '{"email":"bench@example.com","password":"Correct-Horse-Battery-9"}'
  psql "$url" -qc "ANALYZE" >/dev/null
  pids=$(psql "$url" -Atc "SELECT pid FROM pg_stat_activity WHERE datname = current_database() OR backend_type <> 'client backend'")
  pg0=$(ticks $pids)
  wrk -t"$(( conns < 2 ? 1 : 2 ))" -c"$conns" -d"${seconds}s" -s scripts/bench/login.lua "$base" > "target/wrk-ab-$i.txt"
  pg1=$(ticks $pids)
  kill $srv; wait $srv 2>/dev/null || true
  rps=$(awk '/Requests\/sec/ {print $2}' "target/wrk-ab-$i.txt")
  n=$(awk '/requests in/ {print $1}' "target/wrk-ab-$i.txt")
  awk -v r="$rps" -v n="$n" -v t=$((pg1 - pg0)) -v hz="$hz" -v i="$i" \
    'BEGIN { printf "%s %.1f %.3f\n", (i == 0 ? "before" : "after"), r, 1000 * t / hz / n }'
  sleep 2
}

results=target/bench-ab.txt
: > "$results"
for r in $(seq "$rounds"); do
  # A B, then B A: neither binary always runs first.
  if [ $((r % 2)) -eq 1 ]; then order="0 1"; else order="1 0"; fi
  for i in $order; do round "$i" | tee -a "$results"; done
done
awk '
  { rps[$1] = rps[$1] " " $2; pg[$1] = pg[$1] " " $3 }
  function median(list,   a, n, i, j, t) {
    n = split(list, a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  END {
    for (k in rps) printf "%s: login req/s%s (median %.1f); PostgreSQL ms per login%s (median %.3f)\n", k, rps[k], median(rps[k]), pg[k], median(pg[k])
  }' "$results"
