#!/usr/bin/env bash
# GPU checks of the GRPO engine, for a machine with CUDA and torch and no network: the CUDA tests
# (tests/grpo_cuda: the closed form on CUDA vs the CPU path, the device batcher's coalescing bit-identical
# to unbatched calls), then the throughput bench on the device (eager and torch.compile vs the bandwidth bound).
# CI has no GPU and never runs this; a session lent a GPU machine runs it there in one call:
#   bash scripts/device-check.sh        (log in $OUT/device-check.log, or /tmp without OUT)
# Needs torch, pytest and hypothesis only (no FastAPI); PYTHON picks the interpreter (default python3).
# DEVICE=cpu runs the same script on the CPU (a dry run where no GPU is).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp}
py=${PYTHON:-python3}
device=${DEVICE:-cuda}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD REFEREE_TEST_GRPO_DEVICE=$device
(
  status=0
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || true
  $py -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
  timeout 300 $py -m pytest -q -p no:cacheprovider tests/grpo_cuda || status=1
  timeout 300 $py bench/grpo_throughput.py --device "$device" --no-http --reps 21 --compiled || status=1
  echo "device-check status $status"
  exit $status
) 2>&1 | tee "$out/device-check.log"
exit "${PIPESTATUS[0]}"
