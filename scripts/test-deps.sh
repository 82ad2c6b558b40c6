#!/usr/bin/env bash
# What `cargo test` needs besides PostgreSQL: Node.js and the OpenID provider the social
# login tests start (tests/oidc, panva's oidc-provider, pinned by its package-lock.json).
# Installs Node.js with apt when missing (output in target/apt-install.log).
set -euo pipefail
cd "$(dirname "$0")/.."
sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
if ! { command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; }; then
  mkdir -p target
  echo "test-deps: installing nodejs npm with apt-get (output in target/apt-install.log)" >&2
  if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nodejs npm; } \
      >target/apt-install.log 2>&1; then
    tail -n 20 target/apt-install.log >&2
    exit 1
  fi
fi
# npm ci only when the lock changed since the last install (kept between CI runs).
stamp=tests/oidc/node_modules/.lock-installed
if [ ! -f "$stamp" ] || ! cmp -s tests/oidc/package-lock.json "$stamp"; then
  (cd tests/oidc && npm ci --no-audit --no-fund --silent >&2)
  cp tests/oidc/package-lock.json "$stamp"
fi
