#!/usr/bin/env bash
# The machine-code report: every GPU kernel of the catalog compiled to PTX by ILGPU, assembled for Hopper by
# ptxas (-arch=sm_90) and read back with cuobjdump, one table row per kernel (bench/gpu/MachineCode.cs).
# Fetches the three NVIDIA programs first when they are missing (bench/gpu/cuda-tools.sh). No GPU needed.
# --keep DIR leaves every kernel's PTX, cubin and SASS in DIR, to read its loops; --only TEXT, the kernels named so.
set -euo pipefail
cd "$(dirname "$0")/../.."
HITGPU_CUDA_TOOLS="$(bash bench/gpu/cuda-tools.sh)"
export HITGPU_CUDA_TOOLS
dotnet build -c Release bench/HitGpu.Bench >/dev/null
echo "# Machine code, sm_90 (ptxas $("$HITGPU_CUDA_TOOLS/ptxas" --version | grep -o 'V[0-9][0-9.]*'), commit $(git rev-parse --short HEAD), $(date -u +%F))"
dotnet bench/HitGpu.Bench/bin/Release/net10.0/HitGpu.Bench.dll machine-code "$@"
