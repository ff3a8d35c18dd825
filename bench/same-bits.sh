#!/usr/bin/env bash
# Same bits before and after a refactor: trains (CPU accelerator) the defaults, --study, each ensemble kind
# and each embedding at seeds 0-2, on both training paths for a few, and predicts with every model; prints
# one line per run with the hashes of its model file, its predictions and its output (timings removed).
# Usage: bench/same-bits.sh OUT.txt   (run it on both commits and diff the two files)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: bench/same-bits.sh OUT.txt}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dotnet publish src/HitGpu.Cli -c Release -o "$work/cli" -p:UseAppHost=false >/dev/null
cli() { dotnet "$work/cli/hitgpu.dll" "$@"; }
cli train --study --accelerator cpu --epochs 1 --save-splits "$work/splits" >/dev/null
run() { # name seed [env] -- train options
  local name=$1 seed=$2 env=$3; shift 3
  env $env dotnet "$work/cli/hitgpu.dll" train --accelerator cpu --seed "$seed" --out "$work/m.hitgpu" "$@" \
    | sed -E -e 's/[0-9]+\.[0-9]+ s\b/T s/g' -e "s#$work#WORK#g" > "$work/train.txt"
  cli predict --accelerator cpu --model "$work/m.hitgpu" --data "$work/splits/validation.csv" --out "$work/p.csv" >/dev/null
  echo "$name seed=$seed model=$(sha256sum < "$work/m.hitgpu" | cut -c1-16) predict=$(sha256sum < "$work/p.csv" | cut -c1-16) train=$(sha256sum < "$work/train.txt" | cut -c1-16)"
}
{
  for seed in 0 1 2; do
    run defaults $seed "X=1"
    run study $seed "X=1" --study
    run batch $seed "X=1" --ensemble 4 --ensemble-kind batch --epochs 5
    run mini $seed "X=1" --ensemble 4 --ensemble-kind mini --epochs 5
    run piecewise $seed "X=1" --embedding piecewise --epochs 5
    run periodic $seed "X=1" --embedding periodic --ensemble-kind batch --epochs 5 --label-smoothing 0.1
  done
  for seed in 0 1; do
    run study-layered $seed "HITGPU_TRAINING_PATH=layered" --study --epochs 3
    run defaults-layered $seed "HITGPU_TRAINING_PATH=layered" --epochs 3
    run batch-layered $seed "HITGPU_TRAINING_PATH=layered" --ensemble 3 --ensemble-kind batch --epochs 2
    run periodic-layered $seed "HITGPU_TRAINING_PATH=layered" --embedding periodic --ensemble-kind mini --epochs 2
  done
} | tee "$out"
