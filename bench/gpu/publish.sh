#!/usr/bin/env bash
# Publishes the hitgpu CLI and the benchmark program self-contained for linux-x64 (the GPU machines have no
# .NET) into bench/gpu/publish/ (ignored by git), and packs them as bench/gpu/hitgpu-linux-x64.tar.xz.
# The pack must stay under the device tool's 64 MiB carry limit.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=bench/gpu/publish
rm -rf "$out"
# Both in one folder: they share the runtime and the HitGpu assemblies.
dotnet publish src/HitGpu.Cli -c Release -r linux-x64 --self-contained -p:InvariantGlobalization=true -o "$out" >/dev/null
dotnet publish bench/HitGpu.Bench -c Release -r linux-x64 --self-contained -p:InvariantGlobalization=true -o "$out" >/dev/null
cp bench/reference/torch_mlp.py bench/gpu/run-on-gpu.sh "$out"/
cp src/HitGpu.Nn/Data/dataset-of-90s.csv.gz "$out"/
tar -C bench/gpu -cJf bench/gpu/hitgpu-linux-x64.tar.xz publish
ls -l bench/gpu/hitgpu-linux-x64.tar.xz
size=$(stat -c %s bench/gpu/hitgpu-linux-x64.tar.xz)
if [ "$size" -gt $((64 * 1024 * 1024)) ]; then
  echo "the pack is over 64 MiB: trim before carrying it" >&2
  exit 1
fi
