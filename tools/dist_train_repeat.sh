#!/usr/bin/env bash
# Run the same distributed training N times and count the runs in which every rank exited
# with status 0 (a finished run must never be reported as failed, e.g. by a rank aborting
# at interpreter exit). Each run gets its own work dir and port; the logs stay in OUT.
#   bash tools/dist_train_repeat.sh N CONFIG GPUS [train.py args...]
#   OUT=work_dirs/dist_repeat PORT=29600 bash tools/dist_train_repeat.sh 20 \
#       configs/toy/mae_vit-toy-p16_1xb8-20it_toyworld.py 2 --cfg-options train_cfg.max_iters=6
set -uo pipefail
N=$1
CONFIG=$2
GPUS=$3
OUT=${OUT:-work_dirs/dist_train_repeat}
BASE_PORT=${PORT:-29600}
DIR="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$OUT"
clean=0
for i in $(seq 1 "$N"); do
    PORT=$((BASE_PORT + i)) bash "$DIR/dist_train.sh" "$CONFIG" "$GPUS" \
        --work-dir "$OUT/run_$i" "${@:4}" > "$OUT/run_$i.log" 2>&1
    status=$?
    if [ "$status" -eq 0 ]; then
        clean=$((clean + 1))
    else
        echo "run $i exited with status $status (log: $OUT/run_$i.log)"
    fi
done
echo "$clean of $N runs exited 0"
[ "$clean" -eq "$N" ]
