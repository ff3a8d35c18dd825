#!/usr/bin/env bash
# Runs on the GPU machine, inside the unpacked publish/ folder: what ILGPU sees, training on CUDA (the
# test accuracy must match the CPU accelerator's within noise), HitGpu beside PyTorch on the same GPU, and
# the BenchmarkDotNet kernel and training-step suites on every accelerator present. Writes logs to $OUT.
set -uo pipefail
cd "$(dirname "$0")"
export DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1
OUT=${OUT:-./out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
./hitgpu devices | tee "$OUT/devices.txt"
./hitgpu train --accelerator cuda --study 2>&1 | tee "$OUT/train-cuda.txt"
./hitgpu train --accelerator cpu --study 2>&1 | tail -1 | tee "$OUT/train-cpu.txt"
for b in 32 256 4096 65536; do
  ./HitGpu.Bench compare-run --accelerator cuda --batch-size "$b" --epochs 20 | tee -a "$OUT/compare.jsonl"
  python3 torch_mlp.py --data dataset-of-90s.csv.gz --device cuda --batch-size "$b" --epochs 20 | tee -a "$OUT/compare.jsonl"
done
./HitGpu.Bench --filter '*KernelBenchmarks*' '*TrainingBenchmarks*' --join 2>&1 | tail -60 | tee "$OUT/bdn.txt"
