#!/usr/bin/env bash
# The bare argon2id verify rate at the service's parameters (ARGON2_MEMORY_KIB,
# ARGON2_ITERATIONS, ARGON2_PARALLELISM; defaults 19456, 2, 1), all cores, of three
# implementations on this CPU, interleaved (ROUNDS rounds of SECONDS each):
#   rust    the RustCrypto `argon2` crate the service uses (benches/hash.rs, release build)
#   libargon2  the C reference implementation as Debian's `argon2` links it (benches/c/argon2_rate.c)
#   argon2-cffi  the same C code as the Django peer runs it (PyPI argon2-cffi, a venv under target/)
# Installs libargon2-dev with apt when missing. Prints one line per round and the medians.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${SECONDS_EACH:-10}"; rounds="${ROUNDS:-2}"
m="${ARGON2_MEMORY_KIB:-19456}"; t="${ARGON2_ITERATIONS:-2}"; p="${ARGON2_PARALLELISM:-1}"
sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
[ -f /usr/include/argon2.h ] || { $sudo apt-get install -y -qq libargon2-dev >target/apt-argon2.log 2>&1; }
mkdir -p target
gcc -O2 -o target/argon2_rate_c benches/c/argon2_rate.c -largon2 -lpthread
venv=target/argon2-venv
if ! "$venv/bin/python" -c 'import argon2' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check argon2-cffi==25.1.0 argon2-cffi-bindings==26.2.0
fi
cargo bench -q --bench hash --no-run 2>/dev/null
cores=$(nproc)
rust() { BENCH_SECONDS="$seconds" cargo bench -q --bench hash 2>/dev/null | grep -o '[0-9.]* verifies/s' | cut -d' ' -f1; }
c() { target/argon2_rate_c "$seconds" "$m" "$t" "$p" | cut -d' ' -f1; }
cffi() {
  "$venv/bin/python" - "$cores" "$seconds" "$m" "$t" "$p" <<'PY'
import multiprocessing as mp, sys, time, argon2
procs, seconds, m, t, p = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
def worker(out):
    ph = argon2.PasswordHasher(time_cost=t, memory_cost=m, parallelism=p, hash_len=32, salt_len=16, type=argon2.Type.ID)
    h = ph.hash("Correct-Horse-Battery-9"); n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        ph.verify(h, "Correct-Horse-Battery-9"); n += 1
    out.put(n / (time.perf_counter() - t0))
out = mp.Queue(); ps = [mp.Process(target=worker, args=(out,)) for _ in range(procs)]
[x.start() for x in ps]; print(f"{sum(out.get() for _ in ps):.1f}"); [x.join() for x in ps]
PY
}
declare -a R C F
for i in $(seq "$rounds"); do
  R+=("$(rust)"); C+=("$(c)"); F+=("$(cffi)")
  echo "round $i: rust ${R[-1]}  libargon2 ${C[-1]}  argon2-cffi ${F[-1]} verifies/s (m=$m t=$t p=$p, $cores cores)"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
r=$(median "${R[@]}"); cc=$(median "${C[@]}"); f=$(median "${F[@]}")
echo "argon2id rust: $r verifies/s"
echo "argon2id libargon2: $cc verifies/s"
echo "argon2id argon2-cffi: $f verifies/s"
awk -v r="$r" -v c="$cc" -v f="$f" 'BEGIN {printf "argon2id rust / libargon2: %.3f; rust / argon2-cffi: %.3f\n", r / c, r / f}'
