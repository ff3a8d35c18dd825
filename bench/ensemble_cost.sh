#!/usr/bin/env bash
# Builds HitGpu in Release and runs bench/ensemble_cost.py (k batched members, HitGpu beside PyTorch).
# Needs a python3 with torch and pandas (Debian: apt-get install python3-torch python3-pandas).
# Extra arguments go to ensemble_cost.py, e.g. --rounds 1 --members 1,32 --accelerator cuda --torch-device cuda
set -euo pipefail
cd "$(dirname "$0")/.."
dotnet build -c Release src/HitGpu.Cli >/dev/null
dotnet build -c Release bench/HitGpu.Bench >/dev/null
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c "import torch, pandas" 2>/dev/null; then
  PYTHON=/usr/bin/python3  # Debian's python3-torch installs for the system interpreter
fi
exec "$PYTHON" bench/ensemble_cost.py "$@"
