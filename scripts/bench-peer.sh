#!/usr/bin/env bash
# Gatehouse against the Django peer, measured by the peer's own harness
# (`$PEER_DIR/bench.sh`, default ../shared/peer): the release binary with its default
# settings (request logging on, RUST_LOG unset), the same binary with RUST_LOG=warn (what
# the access log costs), and the peer (gunicorn, `$PEER_DIR/django/run.sh`), interleaved
# ROUNDS times (default 2; the two Gatehouse settings swap order each round) on this
# machine. Prints every run's figures, then the medians and the ratios the performance
# goals are written in. Run by `make bench` (phase 5) and on its own; needs wrk, installs
# nothing else outside target/ and the peer's venv.
set -euo pipefail
cd "$(dirname "$0")/.."
peer="${PEER_DIR:-../shared/peer}"
rounds="${ROUNDS:-2}"
port="${PEER_BENCH_PORT:-18090}"
if [ ! -x "$peer/bench.sh" ]; then echo "bench-peer: no peer harness at $peer; skipped"; exit 0; fi
command -v wrk >/dev/null || { echo "bench-peer: wrk is missing (apt-get install wrk)"; exit 1; }
SQLX_OFFLINE=true cargo build --release -q --bin gatehouse
bin=target/release/gatehouse
out=target/peer-bench; rm -rf "$out"; mkdir -p "$out"
url=$(scripts/db.sh url gatehouse_peer_bench)
key=target/bench-jwt.pem
[ -f "$key" ] || "$bin" keys generate --out "$key" >/dev/null

server=""
stop_gatehouse() { [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null; server=""; }
# A fresh database per run, so each run starts from the same size.
start_gatehouse() {
  psql "${url%/*}/postgres" -qc "DROP DATABASE IF EXISTS gatehouse_peer_bench WITH (FORCE)" \
    -c "CREATE DATABASE gatehouse_peer_bench" >/dev/null
  DATABASE_URL="$url" "$bin" migrate >/dev/null
  # Registration's per-address limit would stop the harness's seeding (200 sign-ups from
  # loopback); nothing else differs from the defaults.
  env -u RUST_LOG -u LOG_QUEUE_LINES "$@" DATABASE_URL="$url" APP_ENV=development JWT_SIGNING_KEY_FILE="$key" \
    BIND_ADDR="127.0.0.1:$port" RUN_JOBS=false RATE_LIMIT_REGISTER_PER_HOUR=100000 LOG_FORMAT=json \
    "$bin" serve >> "$out/gatehouse-server.log" 2>&1 &
  server=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && return; sleep 0.1; done
  echo "bench-peer: gatehouse did not start"; exit 1
}
"$peer/django/run.sh" >&2
trap 'stop_gatehouse; "$peer/django/stop.sh" >/dev/null 2>&1 || true' EXIT

gatehouse_run() { # name, extra environment
  start_gatehouse "${@:2}"
  "$peer/bench.sh" "http://127.0.0.1:$port" > "$out/$1-$r.txt" 2>>"$out/harness.log"
  stop_gatehouse
}
# The two Gatehouse settings swap places every round (A peer B, then B peer A): a machine
# that drifts over the run (it does, by 5-10% an hour here) then weighs on both alike, not
# on whichever always ran first.
for r in $(seq "$rounds"); do
  if [ $((r % 2)) = 1 ]; then gatehouse_run gatehouse; else gatehouse_run gatehouse-warn RUST_LOG=warn; fi
  "$peer/bench.sh" http://127.0.0.1:8001 > "$out/peer-$r.txt" 2>>"$out/harness.log"
  if [ $((r % 2)) = 1 ]; then gatehouse_run gatehouse-warn RUST_LOG=warn; else gatehouse_run gatehouse; fi
  echo "round $r done" >&2
done

# The median of a figure over a target's runs.
fig() { cat "$out/$1"-[0-9]*.txt | awk -v k="$2:" '$1 == k {print $2}' | sort -g \
  | awk '{a[NR]=$1} END {if (NR == 0) print "nan"; else print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
for t in gatehouse gatehouse-warn peer; do
  for k in argon2_verify_rate login_rps me_rps refresh_rps whoami_rps login_p99_ms me_p99_ms refresh_p99_ms whoami_p99_ms; do
    echo "$t $k $(fig "$t" "$k")"
  done
done > "$out/medians.txt"
m() { awk -v t="$1" -v k="$2" '$1 == t && $2 == k {print $3}' "$out/medians.txt"; }
for f in "$out"/*-[0-9].txt; do echo "== $(basename "$f")"; cat "$f"; done
echo "== medians over $rounds rounds (Gatehouse default logging | Gatehouse RUST_LOG=warn | peer)"
for k in argon2_verify_rate login_rps me_rps refresh_rps whoami_rps; do
  printf '%-20s %10s %10s %10s\n' "$k" "$(m gatehouse "$k")" "$(m gatehouse-warn "$k")" "$(m peer "$k")"
done
awk -v l="$(m gatehouse login_rps)" -v a="$(m gatehouse argon2_verify_rate)" -v me="$(m gatehouse me_rps)" \
    -v pme="$(m peer me_rps)" -v rf="$(m gatehouse refresh_rps)" -v prf="$(m peer refresh_rps)" \
    -v wh="$(m gatehouse whoami_rps)" -v wme="$(m gatehouse-warn me_rps)" -v wwh="$(m gatehouse-warn whoami_rps)" '
  function r(a, b) { return b > 0 ? a / b : 0 }
  BEGIN {
    printf "login / bare argon2id (the harness'\''s argon2-cffi rate): %.3f (target >= 0.95)\n", r(l, a)
    printf "/users/me vs the peer'\''s /me: %.1fx (target >= 20x)\n", r(me, pme)
    printf "refresh vs the peer'\''s refresh: %.1fx (target >= 15x)\n", r(rf, prf)
    printf "whoami vs the peer'\''s /me: %.1fx (target >= 50x)\n", r(wh, pme)
    printf "default logging / RUST_LOG=warn: whoami %.3f, /users/me %.3f (target >= 0.95)\n", r(wh, wwh), r(me, wme)
  }'
