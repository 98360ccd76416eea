#!/usr/bin/env bash
# The exported model trains further on a GPU: python/train.py with --device cuda on one GPU (PyTorch with CUDA, no
# Node needed there), printing the loss every 50 steps, the validation loss before and after, and the time per step.
#
# Prepare on a machine with charlm (writes into bench/out/gpu/, which git ignores; carry that folder along):
#   charlm train --preset cpu --stop-after 150 --out bench/out/gpu/charlm-cpu        (or any checkpoint of yours)
#   charlm export bench/out/gpu/charlm-cpu --to torch bench/out/gpu/export
#   cp "$CHARLM_TINYSHAKESPEARE" bench/out/gpu/tinyshakespeare.txt                  (the corpus the model knows)
# Run on the GPU machine, from the repository root:
#   bash bench/gpu_torch_continue.sh [EXPORT] [DATA] [OUT]            (STEPS=300 BATCHES="32 256" by default)
# A dry run here on the CPU: DEVICE=cpu STEPS=3 BATCHES=8 TORCHRUN_ARGS="--redirects 2 --tee 2" bash bench/...
# Back on the charlm machine: charlm import OUT-b32 --out runs/gpu && charlm sample --model runs/gpu
set -euo pipefail
EXPORT=${1:-bench/out/gpu/export}
DATA=${2:-tinyshakespeare:bench/out/gpu/tinyshakespeare.txt}
OUT=${3:-bench/out/gpu/continued}
STEPS=${STEPS:-300}
DEVICE=${DEVICE:-cuda}
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.is_available() and torch.cuda.get_device_name(0))'
for B in ${BATCHES:-32 256}; do
  python3 python/train.py --init "$EXPORT" --data "$DATA" --device "$DEVICE" --steps "$STEPS" --batch-size "$B" \
    --log-every 50 --eval-chars 55000 --out "$OUT-b$B"
done
# The same through torchrun with NCCL (one process per GPU; on one GPU this checks the launch path).
# shellcheck disable=SC2086 # TORCHRUN_ARGS is a list of flags
python3 -m torch.distributed.run --standalone --nproc_per_node="${NPROC:-1}" ${TORCHRUN_ARGS:-} python/train.py \
  --init "$EXPORT" --data "$DATA" --device "$DEVICE" \
  --steps 50 --batch-size 64 --log-every 25 --out "$OUT-torchrun"
