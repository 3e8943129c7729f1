#!/usr/bin/env bash
# One entry point for the README's two commands:
#   scripts/dev.sh demo   set up .venv, start the platform on 127.0.0.1 and train the demo session
#   scripts/dev.sh test   set up .venv, lint, and run the whole test suite
# Extra arguments go to `pivot up` (demo) or pytest (test).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
VENV=${PIVOT_VENV:-.venv}

setup() {
  "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "PIVOT needs Python 3.11 or newer ($PY is $("$PY" --version 2>&1))" >&2; exit 1; }
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  # Reinstall only when the dependency list changed.
  stamp="$VENV/.pivot-installed"
  want=$(sha256sum pyproject.toml | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    # torch first and pinned: an unpinned resolve would pull a multi-GB CUDA build.
    "$VENV/bin/python" -c 'import torch' 2>/dev/null || "$VENV/bin/python" -m pip install -q "torch==2.13.0"
    "$VENV/bin/python" -m pip install -q -e ".[dev]"
    echo "$want" > "$stamp"
  fi
}

cmd=${1:-}
shift || true
case "$cmd" in
  demo)
    setup
    exec "$VENV/bin/pivot" up --demo "$@"
    ;;
  up)
    setup
    exec "$VENV/bin/pivot" up "$@"
    ;;
  test)
    setup
    "$VENV/bin/ruff" check .
    # The slowest tests are listed at the end, so a suite that grows towards its 20-minute
    # budget shows where the time goes.
    exec "$VENV/bin/python" -m pytest -q --durations=15 "$@"
    ;;
  *)
    echo "usage: scripts/dev.sh demo|up|test [args...]" >&2
    exit 2
    ;;
esac
