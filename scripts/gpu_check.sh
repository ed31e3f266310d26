#!/usr/bin/env bash
# Validate a GPU box before paying for a run: the offline memory plan, then (with CUDA) 3 steps of the `fast`
# preset measured against it. Any train.py override passes through (a local model dir, a knob the plan names).
#   scripts/gpu_check.sh [--model /path/to/Qwen3-4B] [--prompts-per-step 1]
# Without CUDA it prints the plan, says so and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"

echo "== plan for the fast preset (from the model's config.json; no weights)"
"$PY" -m projected_grpo.train fast --plan "$@"

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "== no CUDA device on this machine: the plan above is the whole check here (exit 0)"
    exit 0
fi
echo "== 3 steps of the fast preset on $("$PY" -c 'import torch; print(torch.cuda.get_device_name())')"
exec "$PY" scripts/gpu_check.py "$@"
