#!/usr/bin/env bash
# A Python venv under target/py-venv holding the given PyPI packages (installed once,
# quietly; pip's output goes to target/py-venv.log). Prints the venv's path.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/py-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
missing=()
for pkg in "$@"; do
  "$venv/bin/python" -m pip show -q "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "py-venv: installing ${missing[*]} (output in target/py-venv.log)" >&2
  if ! "$venv/bin/python" -m pip install -q "${missing[@]}" >target/py-venv.log 2>&1; then
    tail -n 20 target/py-venv.log >&2
    exit 1
  fi
fi
echo "$venv"
