# Gatehouse. `make run` serves against a local database; `make test` runs the whole suite.
SHELL := /bin/bash
.DEFAULT_GOAL := help
# Builds never need a live database: the query data in .sqlx/ is committed.
export SQLX_OFFLINE ?= true

DEV_KEY := .dev/jwt-signing-key.pem

.PHONY: help run test lint fmt db db-stop sqlx-prepare bench bench-peer bench-scale faults fuzz

help:
	@echo "make run           database up, migrations, dev signing key, serve on BIND_ADDR (127.0.0.1:8080)"
	@echo "make test          formatting, clippy, every test against a real PostgreSQL, /admin in headless Chromium"
	@echo "make db            print the DATABASE_URL in use (starting a local cluster if needed)"
	@echo "make db-stop       stop the project-local cluster"
	@echo "make sqlx-prepare  regenerate .sqlx/ after changing a query or a migration"
	@echo "make bench         the benchmarks of docs/performance.md (release build, a few minutes)"
	@echo "make bench-peer    Gatehouse against the Django peer (../shared/peer), interleaved, with the goal ratios"
	@echo "make bench-scale   20,000 against 1,000,000 users and ~38 M audit rows (opt-in: ~30 min, ~40 GB of disk)"
	@echo "make faults        fault drills on private PostgreSQL clusters (outage, kill -9, TLS, restore, replica, three instances)"
	@echo "make fuzz          schemathesis against the release binary, signed in and anonymous; writes docs/fuzz.md"

# The build shows cargo's progress (a first build takes minutes on two cores); then the binary
# runs directly.
run:
	@set -e; url=$$(scripts/db.sh url); export DATABASE_URL=$$url APP_ENV=$${APP_ENV:-development} PUBLIC_BASE_URL=$${PUBLIC_BASE_URL:-http://localhost:8080}; \
	echo "building gatehouse (cargo build; the first build takes several minutes)"; \
	cargo build --bin gatehouse; \
	bin=target/debug/gatehouse; mkdir -p .dev; \
	[ -n "$$JWT_SIGNING_KEY_FILE" ] || [ -f $(DEV_KEY) ] || $$bin keys generate --out $(DEV_KEY); \
	export JWT_SIGNING_KEY_FILE=$${JWT_SIGNING_KEY_FILE:-$(DEV_KEY)}; \
	$$bin migrate; \
	exec $$bin serve

test: lint
	scripts/test-deps.sh
	@set -e; export DATABASE_URL=$$(scripts/db.sh url gatehouse_test); \
	cargo test --tests
	scripts/browser-test.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

fmt:
	cargo fmt --all

db:
	@scripts/db.sh url

db-stop:
	@scripts/db.sh stop

# Compiles every query against a scratch database with the migrations applied (by psql: the
# app cannot be built to migrate before its queries are checked) and rewrites .sqlx/.
sqlx-prepare:
	@set -e; export DATABASE_URL=$$(scripts/db.sh url gatehouse_prepare); \
	psql "$$DATABASE_URL" -qc 'DROP SCHEMA public CASCADE; CREATE SCHEMA public;' >/dev/null; \
	for f in migrations/*.sql; do psql "$$DATABASE_URL" -v ON_ERROR_STOP=1 -q -f "$$f" >/dev/null; done; \
	if cargo sqlx --version >/dev/null 2>&1; then \
	  SQLX_OFFLINE=false cargo sqlx prepare -- --all-targets; \
	else \
	  rm -rf .sqlx && mkdir -p .sqlx && touch src/lib.rs && \
	  SQLX_OFFLINE=false SQLX_OFFLINE_DIR=$$PWD/.sqlx cargo build --all-targets; \
	fi

bench:
	scripts/bench.sh

bench-peer:
	scripts/bench-peer.sh

bench-scale:
	scripts/bench-scale.sh

faults:
	scripts/faults.sh

fuzz:
	scripts/fuzz.sh
