#!/usr/bin/env bash
# Simulated cycles of the variants the device plan chooses between (bench/gpusim/Cycles) and of the peer SGEMM
# (bench/gpusim/peer), on the simulated GPU in timing mode. Cycles are the model's, not a GPU's: compare them on
# one configuration, never write them as times.
#
#   bash bench/gpusim/cycles.sh                      every case, products at 256^3, SM86_RTX3070
#   CASES="product" SIDE=512 bash bench/gpusim/cycles.sh
#
# Env: CONFIG (default SM86_RTX3070, the kit's nearest to Hopper: Ampere, 46 SMs), CASES (a case-name prefix of
# Cycles, or all), SIDE (the product's M = N = K), PEER (1: also the peer at SIDE^3; default 1), OUT (default
# /tmp/hitgpu-gpusim-cycles). Timing mode runs about 100,000 warp instructions a second: a 256^3 tiled product
# takes minutes, 1024^3 hours. Prints the per-case table (kernels.py) and the peer's cycles.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CONFIG=${CONFIG:-SM86_RTX3070}
CASES=${CASES:-all}
SIDE=${SIDE:-256}
PEER=${PEER:-1}
OUT=${OUT:-/tmp/hitgpu-gpusim-cycles}
GPUSIM=$(bash "$ROOT/bench/gpusim/build.sh" | tail -n 1)
# shellcheck disable=SC1091
source "$GPUSIM/env.sh"
mkdir -p "$OUT"
dir="$OUT/run-$CONFIG"
rm -rf "$dir"; mkdir -p "$dir"
nice dotnet build "$ROOT/bench/gpusim/Cycles" -c Release -v q -nologo -clp:ErrorsOnly >/dev/null
cp -r "$ROOT/bench/gpusim/Cycles/bin/Release/net10.0/." "$dir/"
bash "$GPUSIM/scripts/use-config.sh" "$CONFIG" "$dir" timing >/dev/null
commit=$(git -C "$ROOT" rev-parse --short HEAD)
echo "simulated GPU: $CONFIG, timing mode; commit $commit; cases '$CASES', products at ${SIDE}^3"
(cd "$dir" && HITGPU_KERNEL_TRACE=1 nice dotnet Cycles.dll "$CASES" "$SIDE") > "$OUT/cycles-$CONFIG.log" 2>&1
python3 "$ROOT/bench/gpusim/kernels.py" "$OUT/cycles-$CONFIG.log" | sed -n '/^| case/,$p'

if [ "$PEER" = 1 ]; then
  # The peer: CUDA C compiled to PTX by the kit's nvcc (host side by clang-14: CUDA 11.8 refuses Debian 12's gcc 12).
  command -v clang-14 >/dev/null || apt-get install -y -qq clang-14 >/dev/null
  R=$GPUSIM/cuda-root/usr
  PATH=$R/lib/nvidia-cuda-toolkit/bin:$PATH "$R/lib/nvidia-cuda-toolkit/bin/nvcc" -ccbin clang-14 -ptx -arch=sm_86 -O3 \
    -I"$R/include" -o "$dir/sgemm.ptx" "$ROOT/bench/gpusim/peer/sgemm.cu"
  cc -O2 -o "$dir/peer-launch" "$ROOT/bench/gpusim/peer/launch.c" -I"$R/include" -L"$GPUSIM/simlib" -lcuda -lm
  (cd "$dir" && nice ./peer-launch sgemm.ptx "$SIDE" "$SIDE" "$SIDE") > "$OUT/peer-$CONFIG.log" 2>&1
  grep "^peer sgemm" "$OUT/peer-$CONFIG.log"
  echo "peer cycles: $(grep -m1 '^gpu_sim_cycle' "$OUT/peer-$CONFIG.log" | sed 's/.*= *//'), IPC $(grep -m1 '^gpu_ipc' "$OUT/peer-$CONFIG.log" | sed 's/.*= *//')"
fi
