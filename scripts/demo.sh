#!/usr/bin/env bash
# Install fedcredit into .venv and run the embedded demo. Extra arguments go to `fedcredit demo`.
source "$(dirname "$0")/_venv.sh"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
exec .venv/bin/fedcredit demo "$@"
