#!/usr/bin/env bash
# One entry point for a fresh machine: sets up .venv (idempotent) and runs the main job or the tests.
#   bash scripts/quickstart.sh demo    # render the demo video + grid into out/demo
#   bash scripts/quickstart.sh test    # the test suite (what CI runs) + ruff
# torch is installed first, pinned to the CPU wheel (2.13.0), so no multi-GB CUDA build is pulled in.
# GPU users: create .venv with your own torch build first; this script keeps whatever torch is there.
set -euo pipefail
cd "$(dirname "$0")/.."
job="${1:-demo}"
shift || true
PY="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
STAMP="$VENV/.instructavatar-setup"

need_espeak() {   # speech synthesis for the synthetic world (data generation, its tests)
  command -v espeak-ng >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "[setup] installing espeak-ng (Debian package)"
    (apt-get update -qq && apt-get install -y -qq espeak-ng >/dev/null) || echo "[setup] espeak-ng install failed; speech tests will skip"
  else
    echo "[setup] espeak-ng not found (sudo apt-get install espeak-ng); speech tests will skip"
  fi
}

need_chromium() {   # the browser-client test (tests/server/test_browser.py) drives the system chromium
  command -v chromium >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "[setup] installing chromium (Debian package; Playwright uses it, no browser download)"
    (apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null) \
      || echo "[setup] chromium install failed; the browser test will skip"
  else
    echo "[setup] chromium not found (sudo apt-get install chromium); the browser test will skip"
  fi
}

setup() {
  local extras="$1"
  if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating $VENV"
    "$PY" -m venv "$VENV"
  fi
  if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$extras:$(sha1sum pyproject.toml | cut -c1-12)" ]; then
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
    if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
      echo "[setup] installing torch==2.13.0 (CPU)"
      "$VENV/bin/python" -m pip install -q "torch==2.13.0"
    fi
    echo "[setup] installing instructavatar[$extras]"
    "$VENV/bin/python" -m pip install -q -e ".[$extras]"
    echo "$extras:$(sha1sum pyproject.toml | cut -c1-12)" > "$STAMP"
  fi
}

case "$job" in
  demo)
    setup "torch,demo-text,photo"
    exec "$VENV/bin/instructavatar" demo --out out/demo "$@"
    ;;
  test)
    setup "torch,demo-text,dev"
    need_espeak
    need_chromium
    "$VENV/bin/python" -m instructavatar.engine.photo.samples fetch \
      || echo "[setup] sample photos (face_recognition sdist) not fetched; the tests that need them will skip"
    "$VENV/bin/ruff" check .
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
  setup)
    setup "torch,demo-text,dev"
    ;;
  *)
    echo "usage: bash scripts/quickstart.sh demo|test|setup [args...]" >&2
    exit 2
    ;;
esac
