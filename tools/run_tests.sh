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
# one pytest-xdist worker per core (DMT_TEST_WORKERS=1: one process); a file's tests stay
# in one worker so that its module fixtures (toy runs) are built once
WORKERS="${DMT_TEST_WORKERS:-$(nproc 2>/dev/null || echo 1)}"
PARALLEL=()
if [ "$WORKERS" -gt 1 ]; then PARALLEL=(-n "$WORKERS" --dist loadfile); fi
exec "$PY" -m pytest -ra --durations=25 "${PARALLEL[@]}" "$@"
