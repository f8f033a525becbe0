#!/usr/bin/env bash
# Train a line with DistributedDataParallel on CPU (gloo): 2 processes, 64 examples each per step,
# every rank at the same subspace point. Then evaluate it along α.
#   NPROC=2 EPOCHS=20 OUT=runs/ddp_line bash examples/ddp_line.sh
set -euo pipefail
NPROC="${NPROC:-2}"
EPOCHS="${EPOCHS:-20}"
OUT="${OUT:-runs/ddp_line}"
python -m torch.distributed.run --nproc_per_node "$NPROC" -m subspace_param.cli train \
  --kind line --dataset mnist1d --model cnn-small --epochs "$EPOCHS" --batch-size 64 --out "$OUT" --no-progress
python -m subspace_param.cli evaluate "$OUT"
