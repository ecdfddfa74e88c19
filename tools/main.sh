#!/usr/bin/env bash
# Set up whatever is missing, then run the main job: the miniature DMT study on CPU
# (toy world -> three self-supervised teachers -> DMT distillation -> det/seg/cls transfer
# -> results table and pictures under work_dirs/pipeline/).
#   bash tools/main.sh [run_pipeline.py args...]
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$REPO/tools/setup_env.sh"
PY="$(cat "$REPO/.venv-python")"
cd "$REPO"
exec "$PY" tools/run_pipeline.py "$@"
