#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers and prints the DATABASE_URL to use.
#
#   scripts/db.sh url [DBNAME]   ensure a server; print its URL (database DBNAME if given)
#   scripts/db.sh stop           stop the project-local cluster, if this script started one
#
# Uses DATABASE_URL (environment, then .env) when a server answers there. Otherwise starts
# a project-local cluster in .pgdata/ on port $GATEHOUSE_PG_PORT (default 54329) from the
# PostgreSQL binaries on the machine, installing them with apt-get when absent. As root,
# the cluster runs as the `postgres` user (created if missing): PostgreSQL refuses root.
# The database itself is created by `gatehouse migrate` or by this script when DBNAME is given.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
data="$root/.pgdata"
port="${GATEHOUSE_PG_PORT:-54329}"
default_url="postgres://postgres@127.0.0.1:5432/gatehouse"

log() { echo "db.sh: $*" >&2; }

if [ -z "${DATABASE_URL:-}" ] && [ -f "$root/.env" ]; then
  DATABASE_URL=$(sed -n 's/^DATABASE_URL=//p' "$root/.env" | tail -n 1 | tr -d '"'"'"'')
fi
url="${DATABASE_URL:-$default_url}"

# postgres://user[:pass]@host[:port]/db[?params]
re='^postgres(ql)?://(([^:@/]*)(:[^@/]*)?@)?([^:/?]*)(:([0-9]+))?(/([^?]*))?(\?.*)?$'
if [[ ! "$url" =~ $re ]]; then
  log "cannot parse DATABASE_URL ($url)"; exit 2
fi
user="${BASH_REMATCH[3]:-postgres}"
host="${BASH_REMATCH[5]:-127.0.0.1}"
url_port="${BASH_REMATCH[7]:-5432}"

answers() { # host port
  timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null
}

with_db() { # url dbname -> url with the database replaced
  local base="${1%%\?*}" query=""
  [[ "$1" == *\?* ]] && query="?${1#*\?}"
  echo "${base%/*}/$2$query"
}

pg_bindir() {
  if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
    pg_config --bindir; return
  fi
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

run_as_owner() { # command... (as the cluster owner when we are root)
  if [ "$(id -u)" = 0 ]; then
    su postgres -s /bin/bash -c "$(printf '%q ' "$@")"
  else
    "$@"
  fi
}

create_db() { # url dbname
  local target; target=$(with_db "$1" "$2")
  local psql; psql=$(command -v psql || echo "$(pg_bindir)/psql")
  if [ ! -x "$psql" ]; then log "psql not found; install postgresql-client"; exit 2; fi
  if ! "$psql" "$(with_db "$1" postgres)" -Atqc "SELECT 1 FROM pg_database WHERE datname = '$2'" | grep -q 1; then
    "$psql" "$(with_db "$1" postgres)" -qc "CREATE DATABASE \"$2\"" >/dev/null
    log "created database $2"
  fi
  echo "$target"
}

start_local() {
  local bin; bin=$(pg_bindir)
  if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    log "no PostgreSQL binaries found; installing them with apt-get"
    local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >&2
    bin=$(pg_bindir)
  fi
  if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
    useradd --system --home-dir "$data" --shell /usr/sbin/nologin postgres
  fi
  if [ ! -f "$data/PG_VERSION" ]; then
    log "initialising a local cluster in $data"
    mkdir -p "$data"
    [ "$(id -u)" = 0 ] && chown postgres "$data"
    chmod 700 "$data"
    run_as_owner "$bin/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  fi
  if ! answers 127.0.0.1 "$port"; then
    log "starting PostgreSQL on 127.0.0.1:$port"
    run_as_owner "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w \
      -o "-p $port -k /tmp -c listen_addresses=127.0.0.1" start >/dev/null
  fi
}

case "${1:-url}" in
  url)
    dbname="${2:-}"
    if answers "$host" "$url_port"; then
      base="$url"
    else
      log "nothing answers at $host:$url_port; using a project-local cluster"
      start_local
      base="postgres://postgres@127.0.0.1:$port/$(basename "${url%%\?*}")"
    fi
    if [ -n "$dbname" ]; then create_db "$base" "$dbname"; else echo "$base"; fi
    ;;
  stop)
    if [ -f "$data/postmaster.pid" ]; then
      run_as_owner "$(pg_bindir)/pg_ctl" -D "$data" -m fast stop >/dev/null && log "stopped"
    fi
    ;;
  *) echo "usage: $0 url [DBNAME] | stop" >&2; exit 2 ;;
esac
