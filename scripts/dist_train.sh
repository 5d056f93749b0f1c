#!/usr/bin/env bash
# Single-node multi-GPU training: scripts/dist_train.sh NGPUS [hydra overrides...]
#   scripts/dist_train.sh 4 experiment=cityscapes_ann dataset.root=/data/cityscapes
# Multi-node, elastic restarts and other launches: see README ("Distributed training").
set -euo pipefail
if [[ $# -lt 1 || ! "$1" =~ ^[0-9]+$ ]]; then
    echo "usage: $0 NGPUS [overrides...]" >&2
    exit 2
fi
NGPUS=$1
shift
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python )}
exec "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node="$NGPUS" \
    tools/train.py "$@"
