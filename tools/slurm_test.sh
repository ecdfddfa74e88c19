#!/usr/bin/env bash
# Testing on a Slurm cluster (one task per GPU).
#   GPUS=8 bash tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args...]
# Env: GPUS (default 8), GPUS_PER_NODE (default 8), CPUS_PER_TASK (default: the config's
#      test_dataloader.num_workers + 1, the loader processes and the testing process), SRUN_ARGS.
set -euo pipefail
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
CHECKPOINT=$4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
SRUN_ARGS=${SRUN_ARGS:-""}
PYTHON=${PYTHON:-python}
DIR="$(cd "$(dirname "$0")" && pwd)"
if [ -z "${CPUS_PER_TASK:-}" ]; then
    CPUS_PER_TASK=$("$PYTHON" "$DIR/slurm_cpus.py" "$CONFIG" test_dataloader) || exit 1
fi

# shellcheck disable=SC2086
PYTHONPATH="$DIR/..":${PYTHONPATH:-} \
srun -p "$PARTITION" \
    --job-name="$JOB_NAME" \
    --gres=gpu:"$GPUS_PER_NODE" \
    --ntasks="$GPUS" \
    --ntasks-per-node="$GPUS_PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 \
    $SRUN_ARGS \
    "$PYTHON" -u "$DIR/test.py" "$CONFIG" "$CHECKPOINT" --launcher="slurm" "${@:5}"
