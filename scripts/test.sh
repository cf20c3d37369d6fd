#!/usr/bin/env bash
# Install fedcredit with its test tools into .venv; check generated stubs, lint, types; run the
# tests. Extra arguments go to pytest (e.g. `-m unit`).
source "$(dirname "$0")/_venv.sh"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
echo "== generated gRPC stubs match proto/"
.venv/bin/python scripts/gen_proto.py --check
echo "== ruff"
.venv/bin/ruff check .
echo "== mypy"
.venv/bin/mypy .
echo "== pytest"
exec .venv/bin/python -m pytest "$@"
