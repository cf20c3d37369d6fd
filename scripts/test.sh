#!/usr/bin/env bash
# Install fedcredit with its test tools into .venv; check generated stubs, lint, types; run the
# tests. Extra arguments go to pytest (e.g. `-m unit`).
source "$(dirname "$0")/_venv.sh"
# The PostgreSQL feature-store tests start their own throwaway server (node/store/pg_local.py)
# and need its binaries; a fresh root machine with apt gets them here. No service is started.
if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing PostgreSQL (server binaries for the feature-store tests)"
    # A policy-rc.d answering 101 keeps the package from starting its system service.
    policy=/usr/sbin/policy-rc.d own_policy="" status=0
    if [ ! -e "$policy" ]; then
      printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && own_policy=1
    fi
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } \
      || status=$?
    if [ -n "$own_policy" ]; then rm -f "$policy"; fi
    [ "$status" = 0 ] || exit "$status"
  else
    echo "== PostgreSQL binaries not found: the PostgreSQL tests will be skipped (fail with CI=1)"
  fi
fi
# The JDBC ingest test reads a table from that PostgreSQL through Debian's JDBC driver.
if [ ! -e /usr/share/java/postgresql.jar ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null
then
  echo "== installing the PostgreSQL JDBC driver (libpostgresql-jdbc-java) for the JDBC ingest test"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    libpostgresql-jdbc-java >/dev/null
fi
# The report-page tests photograph and print the page with headless Chromium (Debian's package).
if [ -z "${FEDCREDIT_CHROMIUM:-}" ] && ! command -v chromium >/dev/null \
  && ! command -v chromium-browser >/dev/null && ! command -v google-chrome >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing Chromium (headless, for the report-page screenshot and print tests)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "== Chromium not found: the report-page screenshot tests will be skipped (fail with CI=1)"
  fi
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
echo "== generated gRPC stubs match proto/"
.venv/bin/python scripts/gen_proto.py --check
echo "== ruff"
.venv/bin/ruff check .
echo "== mypy"
.venv/bin/mypy .
echo "== pytest"
# Two workers (this machine's cores), each taking whole files: module fixtures stay together.
# FEDCREDIT_TEST_WORKERS=0 runs everything in this process.
exec .venv/bin/python -m pytest -n "${FEDCREDIT_TEST_WORKERS:-2}" --dist loadfile "$@"
