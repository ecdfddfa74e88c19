#!/usr/bin/env bash
# Multi-GPU / multi-node training with torchrun (mmengine launcher "pytorch").
#   bash tools/dist_train.sh CONFIG GPUS [train.py args...]
# Multi-node: run on every node with the same MASTER_ADDR/PORT and NNODES, and NODE_RANK=0..NNODES-1.
#   NNODES=4 NODE_RANK=$i MASTER_ADDR=host0 PORT=29500 bash tools/dist_train.sh CONFIG 8
# Without CUDA the processes use the gloo backend on CPU (see dmt_mm/engine/launch.py).
set -euo pipefail
CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-python}
DIR="$(cd "$(dirname "$0")" && pwd)"

PYTHONPATH="$DIR/..":${PYTHONPATH:-} \
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" --master_port="$PORT" \
    "$DIR/train.py" "$CONFIG" --launcher pytorch "${@:3}"
