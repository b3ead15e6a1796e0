#!/usr/bin/env bash
# Set everything up (scripts/setup_env.sh), then run the whole test suite.
# Exits non-zero when any test fails (or none ran). Extra arguments go to pytest,
# e.g. `bash scripts/run_tests.sh tests/test_cli.py -x`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup_env.sh
export QT_QPA_PLATFORM="${QT_QPA_PLATFORM:-offscreen}"     # Qt without a screen
exec "$ROOT/.venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
