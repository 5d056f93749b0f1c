#!/usr/bin/env bash
# Single-node multi-GPU training: scripts/dist_train.sh NGPUS [hydra overrides...]
#   scripts/dist_train.sh 4 experiment=cityscapes_ann dataset.root=/data/cityscapes
# Multi-node, elastic restarts and other launches: docs/training.md ("Several GPUs").
set -euo pipefail
if [[ $# -lt 1 || ! "$1" =~ ^[0-9]+$ ]]; then
    echo "usage: $0 NGPUS [overrides...]" >&2
    exit 2
fi
NGPUS=$1
shift
# Run where the user is: relative paths (dataset.root, outputs/) resolve
# against the current directory, as with python tools/train.py.
REPO=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-$( [[ -x "$REPO/.venv/bin/python" ]] && echo "$REPO/.venv/bin/python" || echo python )}
exec "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node="$NGPUS" \
    "$REPO/tools/train.py" "$@"
