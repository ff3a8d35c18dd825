#!/usr/bin/env bash
# Runs on the GPU machine, inside the unpacked publish/ folder (see publish.sh). `run-on-gpu.sh bench`: what
# ILGPU sees, the study's training on CUDA and on the CPU accelerator (the test accuracy must match within
# noise), HitGpu beside PyTorch on the same GPU at four batch sizes, the GPU epoch beside the layered path,
# many runs at once beside PyTorch (one after another, vmapped: torch_many.py), hitgpu accuracy and a sweep
# (DECADES=folder of the decade files), the dense forward kernel beside cuBLAS, and batched ensembles (the
# default train, and k = 1 and 32 members of each kind beside torch_tabm.py).
# `run-on-gpu.sh tests`: the kernel and network test programs with the accelerator fixture on CUDA.
# No argument: both. Logs go to $OUT (the device tool brings back at most 8 files).
set -uo pipefail
cd "$(dirname "$0")"
export DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1 HITGPU_DEBUG=1
OUT=${OUT:-./out}
mkdir -p "$OUT"
log="$OUT/gpu-run.txt"
what=${1:-all}

if [ "$what" = bench ] || [ "$what" = all ]; then
  {
    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
    ./hitgpu devices
    ./hitgpu train --accelerator cuda --study | tail -1
    ./hitgpu train --accelerator cpu --study | tail -1
    for b in 32 256 4096 65536; do
      ./HitGpu.Bench compare-run --accelerator cuda --batch-size "$b" --epochs 20
      python3 torch_mlp.py --data dataset-of-90s.csv.gz --device cuda --batch-size "$b" --epochs 20
    done
    # A million songs, resampled here from the embedded file: batch 4096 and 65536 then mean many steps an epoch.
    ./HitGpu.Bench resample --rows 1000000 --out songs-1m.csv --seed 1
    for b in 32 256 4096 65536; do
      ./HitGpu.Bench compare-run --accelerator cuda --batch-size "$b" --epochs 3 --data songs-1m.csv
      python3 torch_mlp.py --data songs-1m.csv --device cuda --batch-size "$b" --epochs 3
    done
    # The GPU epoch (the plan's path where a network fits a group's shared memory: one launch an epoch)
    # beside the layered path it replaced there (HITGPU_TRAINING_PATH=layered), the study network at batch 32.
    HITGPU_TRAINING_PATH=layered ./HitGpu.Bench compare-run --accelerator cuda --batch-size 32 --epochs 20
    # Many trainings at once: 132 study runs (seed r: its own split, weights and order) through TrainMany
    # (one launch an epoch for all, a group a run), beside PyTorch training them one after another and vmapped.
    ./HitGpu.Bench many-runs --accelerator cuda --runs 132 --epochs 20
    HITGPU_TRAINING_PATH=layered ./HitGpu.Bench many-runs --accelerator cuda --runs 8 --epochs 5
    python3 torch_many.py --data dataset-of-90s.csv.gz --device cuda --runs 8 --epochs 5 --mode sequential
    python3 torch_many.py --data dataset-of-90s.csv.gz --device cuda --runs 132 --epochs 20 --mode vmap
    # hitgpu accuracy (30 runs of the defaults) and a 20-candidate sweep (600 runs), where the decade files are
    # given (DECADES=folder): the whole command, on the GPU epoch and on the layered path.
    if [ -n "${DECADES:-}" ]; then
      /usr/bin/time -f "hitgpu accuracy on cuda (GPU epoch): %e s" ./hitgpu accuracy --data-dir "$DECADES" --accelerator cuda | tail -2
      HITGPU_TRAINING_PATH=layered /usr/bin/time -f "hitgpu accuracy on cuda (layered): %e s" ./hitgpu accuracy --data-dir "$DECADES" --accelerator cuda | tail -2
      { echo defaults; for lr in 0.0005 0.001 0.002 0.003; do for d in 0 0.1 0.2 0.3 0.4; do echo "--learning-rate $lr --dropout $d"; done; done; } | head -20 > candidates.txt
      /usr/bin/time -f "hitgpu accuracy --tune --candidates (20 x 30 runs) on cuda: %e s" ./hitgpu accuracy --data-dir "$DECADES" --tune --candidates candidates.txt --accelerator cuda | tail -4
    fi
    # Batched ensembles: the defaults (whole process) and k members of each kind, loop beside loop.
    /usr/bin/time -f "hitgpu train (defaults) on cuda: %e s" ./hitgpu train --accelerator cuda | tail -1
    for kind in independent batch mini; do
      for k in 1 32; do
        ./HitGpu.Bench compare-run --accelerator cuda --ensemble "$k" --ensemble-kind "$kind" --epochs 20
        python3 torch_tabm.py --data dataset-of-90s.csv.gz --device cuda --kind "$kind" --members "$k" --epochs 20
      done
    done
    for product in forward backward; do
      for variant in simple tiled; do
        ./HitGpu.Bench gemm --accelerator cuda --size 4096 --repeats 10 --product "$product" --variant "$variant"
      done
      python3 torch_matmul.py --size 4096 --product "$product"
    done
  } 2>&1 | tee -a "$log"
fi

if [ "$what" = tests ] || [ "$what" = all ]; then
  for tests in HitGpu.Kernels.Tests HitGpu.Nn.Tests; do
    HITGPU_TEST_ACCELERATOR=cuda timeout 240 "./$tests" -noColor > "$OUT/$tests-cuda.txt" 2>&1
    echo "$tests on cuda: exit $?; $(grep -E 'Total:' "$OUT/$tests-cuda.txt" | tail -1)" | tee -a "$log"
  done
fi
