# Sourced by scripts/demo.sh and scripts/test.sh: a project venv with Python 3.11+.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "fedcredit needs Python 3.11 or newer (found: $("$PY" --version 2>&1)); set PYTHON=..." >&2
  exit 2
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
# Spark (the feature pipeline) needs Java 17 or newer.
java_major() { java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1; }
if ! command -v java >/dev/null 2>&1 || [ "$(java_major)" -lt 17 ] 2>/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Java 17 (openjdk-17-jre-headless) for Spark" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      openjdk-17-jre-headless >/dev/null
  else
    echo "fedcredit's Spark pipeline needs Java 17+ (found: $(java_major 2>/dev/null || echo none));" \
      "install it, e.g. apt-get install openjdk-17-jre-headless" >&2
    exit 2
  fi
fi
