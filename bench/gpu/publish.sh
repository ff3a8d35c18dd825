#!/usr/bin/env bash
# Publishes the hitgpu CLI, the benchmark program and both test programs (xunit v3: a test project is an
# executable) self-contained for linux-x64 (the GPU machines have no .NET) into bench/gpu/publish/ (ignored
# by git), and packs them as bench/gpu/hitgpu-linux-x64.tar.xz.
# The pack must stay under the device tool's 64 MiB carry limit.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=bench/gpu/publish
rm -rf "$out"
# All in one folder: they share the runtime and the HitGpu assemblies.
for project in src/HitGpu.Cli bench/HitGpu.Bench tests/HitGpu.Kernels.Tests tests/HitGpu.Nn.Tests; do
  dotnet publish "$project" -c Release -r linux-x64 --self-contained -p:InvariantGlobalization=true -o "$out" >/dev/null
done
cp bench/reference/torch_mlp.py bench/reference/torch_tabm.py bench/reference/torch_matmul.py bench/reference/torch_many.py bench/gpu/run-on-gpu.sh bench/gpu/tune-on-gpu.sh "$out"/
cp src/HitGpu.Nn/Data/dataset-of-90s.csv.gz "$out"/
tar -C bench/gpu -cJf bench/gpu/hitgpu-linux-x64.tar.xz publish
ls -l bench/gpu/hitgpu-linux-x64.tar.xz
size=$(stat -c %s bench/gpu/hitgpu-linux-x64.tar.xz)
if [ "$size" -gt $((64 * 1024 * 1024)) ]; then
  echo "the pack is over 64 MiB: trim before carrying it" >&2
  exit 1
fi
