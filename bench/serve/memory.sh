#!/usr/bin/env bash
# Memory of `hitgpu serve` under a burst of large JSON bodies: starts the server (Release, --quiet) on a free
# loopback port, sends BURST (default 8) concurrent KServe v2 infer requests of a ~15 MB JSON tensor each
# (the 90s songs' features as the dataset writes them, repeated), and reads /proc/PID/status: VmRSS before,
# VmHWM (the round's peak: reset before it) after the burst, and VmRSS 1, 5 and 15 s after it. Prints one
# markdown row a round.
# Env: BURST (8), BODY_MB (15), ROUNDS (1: bursts in a row, each row printed).
set -euo pipefail
cd "$(dirname "$0")/../.."
burst=${BURST:-8}
body_mb=${BODY_MB:-15}
rounds=${ROUNDS:-1}

source bench/serve/common.sh
build src/HitGpu.Cli
hitgpu=(dotnet src/HitGpu.Cli/bin/Release/net10.0/hitgpu.dll)

"${hitgpu[@]}" train --study --epochs 3 --out "$tmp/model.hitgpu" >"$tmp/train.log" 2>&1 || { cat "$tmp/train.log" >&2; exit 1; }
gunzip -c src/HitGpu.Nn/Data/dataset-of-90s.csv.gz >"$tmp/songs.csv"
python3 - "$tmp/songs.csv" "$tmp/body.json" "$body_mb" <<'PY'
import csv, sys
features = ["danceability", "energy", "key", "loudness", "mode", "speechiness", "acousticness", "instrumentalness",
            "liveness", "valence", "tempo", "duration_ms", "time_signature", "chorus_hit", "sections"]
with open(sys.argv[1], newline="") as f:
    rows = [",".join(r[c] for c in features) for r in csv.DictReader(f)]
limit = int(float(sys.argv[3]) * 1e6)
parts, size, n = [], 0, 0
while size < limit - 200:
    row = rows[n % len(rows)]
    parts.append(row)
    size += len(row) + 1
    n += 1
with open(sys.argv[2], "w") as out:
    out.write('{"inputs": [{"name": "features", "datatype": "FP32", "shape": [%d, 15], "data": [' % n)
    out.write(",".join(parts))
    out.write("]}]}")
print(n, file=open(sys.argv[2] + ".rows", "w"))
PY
rows=$(cat "$tmp/body.json.rows")
bytes=$(stat -c %s "$tmp/body.json")

port=$(free_port)
start_server "hitgpu serve" "${hitgpu[@]}" serve --model "$tmp/model.hitgpu" --name hits --port "$port" --quiet --max-rows 1000000 --max-body-mb 16
# `dotnet hitgpu.dll` runs the server in its own process: the pid started is the one that listens.
status() { awk -v k="$1:" '$1 == k { printf "%d", $2 / 1024 }' "/proc/$server_pid/status"; }

echo "body: $bytes bytes, $rows songs; $burst at once; $(nproc) cores; $(dotnet --version); commit $(git rev-parse --short HEAD)"
echo "| round | RSS before MB | peak RSS MB (VmHWM) | RSS 1 s after MB | 5 s after | 15 s after | answers 200 |"
echo "|---:|---:|---:|---:|---:|---:|---:|"
for round in $(seq "$rounds"); do
  sleep 2
  echo 5 >"/proc/$server_pid/clear_refs" # VmHWM from here: this round's peak
  before=$(status VmRSS)
  pids=()
  for i in $(seq "$burst"); do
    curl -s -o "$tmp/answer.$i" -w '%{http_code}\n' -H 'Content-Type: application/json' --data-binary @"$tmp/body.json" \
      "http://127.0.0.1:$port/v2/models/hits/infer" >"$tmp/code.$i" &
    pids+=($!)
  done
  wait "${pids[@]}"
  ok=$(cat "$tmp"/code.* | grep -c '^200$' || true)
  peak=$(status VmHWM)
  sleep 1; after1=$(status VmRSS)
  sleep 4; after5=$(status VmRSS)
  sleep 10; after15=$(status VmRSS)
  echo "| $round | $before | $peak | $after1 | $after5 | $after15 | $ok of $burst |"
done
