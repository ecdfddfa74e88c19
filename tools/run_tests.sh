#!/usr/bin/env bash
# Set up whatever is missing (venv, OpenMMLab stack, dmt_mm) and run the test suite.
#   bash tools/run_tests.sh [pytest args...]
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$REPO/tools/setup_env.sh"
PY="$(cat "$REPO/.venv-python")"
cd "$REPO"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
# lint first: a style or undefined-name error fails the run in a second, not after the suite
"$PY" -m ruff check --quiet "$REPO" || { echo "ruff found the problems above: fix them (ruff check --fix . fixes most)" >&2; exit 1; }
exec "$PY" -m pytest -ra --durations=15 "$@"
