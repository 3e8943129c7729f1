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

# The dashboard (api/ui) is built into api/pivot_api/ui_dist when its sources (or the
# TypeScript client it is built with) changed. Without Node.js 20+ the API still runs and /ui/
# says how to build it.
build_ui() {
  if ! command -v npm >/dev/null 2>&1 \
      || ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' \
        2>/dev/null; then
    echo "Node.js 20+ with npm not found: the dashboard (/ui/) is not built" >&2
    return 0
  fi
  stamp=api/pivot_api/ui_dist/.sources
  want=$(find api/ui api/clients/typescript/src -path '*/node_modules' -prune -o -type f -print \
           | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "building the dashboard (api/ui) ..."
    (cd api/ui && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent)
    echo "$want" > "$stamp"
  fi
}

# The dashboard's browser tests drive Debian's chromium (a test tool's own browser download
# does not work offline); CI runs as root and installs it.
ensure_chromium() {
  command -v chromium >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium (apt) for the dashboard's browser tests ..."
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }
  else
    echo "chromium not found: the dashboard's browser tests will be skipped" >&2
  fi
}

cmd=${1:-}
shift || true
case "$cmd" in
  demo)
    setup
    build_ui
    exec "$VENV/bin/pivot" up --demo "$@"
    ;;
  up)
    setup
    build_ui
    exec "$VENV/bin/pivot" up "$@"
    ;;
  test)
    setup
    build_ui
    ensure_chromium
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
