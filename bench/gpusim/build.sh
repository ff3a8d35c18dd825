#!/usr/bin/env bash
# Builds the simulated GPU (GPGPU-Sim 4.2 behind a CUDA driver layer for ILGPU) with the kit in
# ../shared/tools/gpusim, and HitGpu's own patches (bench/gpusim/patches) applied after the kit's:
#   hitgpu-01-string-load-keeps-stdin.patch  a second module load no longer dies in the PTX lexer
#   hitgpu-02-symbol-table-per-module.patch  modules keep their kernels apart (many ILGPU kernels share a name)
#   hitgpu-driver.inc.patch                  the driver layer: cuFuncSetAttribute (the shared-memory opt-in),
#                                            a line per module load and per launch, naming its module
# Reuses a build already there (GPUSIM, default /tmp/gpusim): the patches apply once, make rebuilds what changed.
# Prints the prefix to source ($GPUSIM/env.sh) on its last line. Exits non-zero if anything fails.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
KIT=${GPUSIM_KIT:-$(cd "$HERE/../../.." && pwd)/shared/tools/gpusim}
export GPUSIM=${GPUSIM:-/tmp/gpusim}
[ -f "$KIT/scripts/build.sh" ] || { echo "no gpusim kit at $KIT (GPUSIM_KIT names it)" >&2; exit 1; }
patches=$(mktemp -d)
trap 'rm -rf "$patches"' EXIT
cp "$KIT"/patches/* "$patches"/
chmod u+w "$patches"/*
patch -s "$patches/ilgpu_driver.inc" < "$HERE/patches/hitgpu-driver.inc.patch"
cp "$HERE"/patches/hitgpu-0*.patch "$patches"/   # sorted after the kit's dynamic-smem.patch
PATCHES="$patches" nice bash "$KIT/scripts/build.sh" >&2
echo "$GPUSIM"
