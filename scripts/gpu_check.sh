#!/usr/bin/env bash
# The GPU path in under 5 minutes on one NVIDIA GPU: Ray Train with use_gpu (NCCL, SyncBN, AMP),
# evaluation and ONNX export, then training images/s of TopFormer-T/S/B at 512x512, batch 16, on the
# GPU next to this machine's CPU (see scripts/gpu_check.py).
#
#   bash scripts/gpu_check.sh              # exit 0 passed, 1 a check failed, 2 no GPU (nothing run)
#   bash scripts/gpu_check.sh --dry-run    # no GPU needed: configs, models and the plan only
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[[ -x "$PY" ]] || PY="$(command -v python3)"

dry=0
for a in "$@"; do [[ "$a" == "--dry-run" ]] && dry=1; done
if [[ $dry -eq 0 ]]; then
  if ! command -v nvidia-smi >/dev/null 2>&1; then
    echo "gpu_check: no NVIDIA GPU: nvidia-smi is not installed; run it on a GPU machine (or --dry-run)" >&2
    exit 2
  fi
  if ! gpus="$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1)" || [[ -z "$gpus" ]]; then
    echo "gpu_check: no NVIDIA GPU: nvidia-smi found no device ($gpus)" >&2
    exit 2
  fi
  echo "nvidia-smi: $gpus"
fi
export RAY_USAGE_STATS_ENABLED=0 MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false
# 290 s: the whole check stays under 5 minutes even when a step hangs
exec timeout --kill-after=10 290 "$PY" scripts/gpu_check.py "$@"
