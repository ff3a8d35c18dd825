#!/usr/bin/env bash
# Builds HitGpu in Release and runs it beside the PyTorch reference (bench/compare.py), printing the ratio
# table; `compare.sh ensembles ...` runs bench/ensemble_cost.py instead (k batched members beside
# torch_tabm.py, and the default train beside PyTorch's single network). Needs a python3 with torch and pandas
# (Debian: apt-get install python3-torch python3-pandas).
# Extra arguments go to the script, e.g. --rounds 5 --batch-sizes 32,256,4096 --accelerator cuda --torch-device cuda
set -euo pipefail
cd "$(dirname "$0")/.."
dotnet build -c Release src/HitGpu.Cli >/dev/null
dotnet build -c Release bench/HitGpu.Bench >/dev/null
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c "import torch, pandas" 2>/dev/null; then
  PYTHON=/usr/bin/python3  # Debian's python3-torch installs for the system interpreter
fi
script=bench/compare.py
if [ "${1:-}" = ensembles ]; then
  script=bench/ensemble_cost.py
  shift
fi
exec "$PYTHON" "$script" "$@"
