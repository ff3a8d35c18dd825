#!/usr/bin/env bash
# Runs on the GPU machine, inside the unpacked publish/ folder: `hitgpu accuracy --tune` (validation accuracy
# only; the test part is not reported) for each line of options in the file $2, over the decade files in the
# folder $1, $3 (default 2) configurations at a time on the one GPU. Prints each one's mean validation accuracy.
set -uo pipefail
cd "$(dirname "$0")"
export DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1
# Eight at once shared one H200 badly (11-30 s a run against 1.4-3.3 s alone); the default of two is untested.
data=$1 configs=$2 parallel=${3:-2}
OUT=${OUT:-./out}
mkdir -p "$OUT" tune
i=0
while read -r options; do
  [ -z "$options" ] && continue
  i=$((i + 1))
  echo "$options" > "tune/$i.options"
  # shellcheck disable=SC2086
  timeout "${TUNE_LIMIT_S:-3600}" ./hitgpu accuracy --data-dir "$data" --tune --accelerator cuda $options > "tune/$i.txt" 2>&1 &
  while [ "$(jobs -r | wc -l)" -ge "$parallel" ]; do sleep 1; done
done < "$configs"
wait
for f in tune/*.options; do
  n=${f%.options}
  echo "== $(cat "$f")"
  grep -E '^\| [0-9]|^mean validation|error' "$n.txt"
done | tee "$OUT/tune.txt"
