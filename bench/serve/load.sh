#!/usr/bin/env bash
# Load benchmark of `hitgpu serve` beside the ONNX Runtime peer a .NET team would write (bench/ServePeer):
# trains one model with the CLI defaults, exports it to ONNX, then runs each server alone on a free loopback
# port (hitgpu serve with its default window, none on the CPU; with a 2 ms window; the peer) under the same
# load generator (bench/ServeLoad) with 1 and 256 songs per KServe v2 infer request, ROUNDS times in turn,
# and prints a markdown table of the medians. hitgpu serve runs with --quiet: the peer logs no request either.
# Env: CLIENTS (default 64), SECONDS (measured seconds per run, default 10), WARMUP (default 5), ROUNDS (3).
# SECONDS is bash's own clock: take the caller's value before it ticks (printenv fails when the caller set none).
measure_s=$(printenv SECONDS || echo 10)
set -euo pipefail
cd "$(dirname "$0")/../.."
clients=${CLIENTS:-64}
warmup_s=${WARMUP:-5}

build() {
  local log
  if ! log=$(dotnet build -c Release -nologo "$1" 2>&1); then
    printf '%s\n' "$log" >&2
    exit 1
  fi
}
build src/HitGpu.Cli
build bench/ServePeer
build bench/ServeLoad
hitgpu=(dotnet src/HitGpu.Cli/bin/Release/net10.0/hitgpu.dll)
peer=(dotnet bench/ServePeer/bin/Release/net10.0/ServePeer.dll)
load=(dotnet bench/ServeLoad/bin/Release/net10.0/ServeLoad.dll)

tmp=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill -KILL "$server_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

"${hitgpu[@]}" train --out "$tmp/model.hitgpu" >"$tmp/train.log" 2>&1 || { cat "$tmp/train.log" >&2; exit 1; }
"${hitgpu[@]}" export --model "$tmp/model.hitgpu" --onnx "$tmp/model.onnx" >/dev/null
gunzip -c src/HitGpu.Nn/Data/dataset-of-90s.csv.gz >"$tmp/songs.csv"

free_port() {
  local port
  for _ in $(seq 100); do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return; fi
  done
  echo "no free port" >&2
  exit 1
}

# start_server LABEL COMMAND...: starts it in the background (its pid in server_pid) and waits until it is ready.
start_server() {
  local label=$1; shift
  "$@" >"$tmp/server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 600); do
    if curl -sf "http://127.0.0.1:$port/v2/health/ready" >/dev/null; then return; fi
    if ! kill -0 "$server_pid" 2>/dev/null; then break; fi
    sleep 0.1
  done
  echo "$label did not become ready on port $port:" >&2
  tail -20 "$tmp/server.log" >&2
  exit 1
}

stop_server() {
  kill -TERM "$server_pid"
  for _ in $(seq 100); do
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=
}

rounds=${ROUNDS:-3}
results="$tmp/results.jsonl"
: >"$results"
# measure KEY: both request sizes against the server that is up; one JSON line each, tagged with the server and round.
measure() {
  local key=$1 rows json
  for rows in 1 256; do
    json=$("${load[@]}" --url "http://127.0.0.1:$port/v2/models/hit/infer" --data "$tmp/songs.csv" --clients "$clients" \
      --seconds "$measure_s" --warmup "$warmup_s" --rows "$rows" --pid "$server_pid") || true
    echo "{\"server\":\"$key\",\"round\":$round,${json#\{}" >>"$results"
  done
}

servers=(default batch2 peer)
for round in $(seq "$rounds"); do
  # Each round starts with another server, so that none always runs first (or last) on a warming machine.
  for i in "${!servers[@]}"; do
    server=${servers[$(( (i + round - 1) % ${#servers[@]} ))]}
    port=$(free_port)
    case $server in
      default) start_server "$server" "${hitgpu[@]}" serve --model "$tmp/model.hitgpu" --name hit --host 127.0.0.1 --port "$port" --quiet ;;
      batch2) start_server "$server" "${hitgpu[@]}" serve --model "$tmp/model.hitgpu" --name hit --host 127.0.0.1 --port "$port" --batch-window-ms 2 --quiet ;;
      peer) start_server "$server" "${peer[@]}" --model "$tmp/model.onnx" --name hit --urls "http://127.0.0.1:$port" ;;
    esac
    measure "$server"
    stop_server
  done
done

commit=$(git rev-parse --short HEAD)
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then commit="$commit (with uncommitted changes)"; fi
echo "Serving load: $clients clients, ${measure_s} s measured after ${warmup_s} s warm-up per run, $rounds rounds (the servers in turn, one at a time on loopback, the same load generator)."
echo "Machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1); .NET $(dotnet --version); $(date -u '+%Y-%m-%d %H:%M UTC'); commit $commit."
echo "Medians over the rounds; errors summed; peak RSS the largest VmHWM (a server's whole life, both sizes); RSS at the measured window's start and end, of the median round."
echo
python3 - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
labels = {"default": "hitgpu serve (no batch window on the CPU)", "batch2": "hitgpu serve --batch-window-ms 2", "peer": "ONNX Runtime peer (ASP.NET Core)"}
def med(runs, key):
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else float("nan")
print("| server | songs/request | requests/s | vs peer | p50 ms | p99 ms | errors | server CPU ms/request | peak RSS MB | RSS start -> end MB |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for size in (1, 256):
    peer = med([r for r in rows if r["server"] == "peer" and r["rows"] == size], "requests_per_s")
    for key, label in labels.items():
        runs = [r for r in rows if r["server"] == key and r["rows"] == size]
        if not runs:
            continue
        rate = med(runs, "requests_per_s")
        middle = sorted(runs, key=lambda r: r["requests_per_s"])[len(runs) // 2]
        print(f"| {label} | {size} | {rate:.0f} | {rate / peer:.2f} | {med(runs, 'p50_ms'):.2f} | {med(runs, 'p99_ms'):.2f} | {sum(r['errors'] for r in runs)} | "
              f"{med(runs, 'server_cpu_ms_per_request'):.3f} | {max(r['server_peak_rss_mb'] for r in runs):.0f} | {middle['server_rss_start_mb']:.0f} -> {middle['server_rss_end_mb']:.0f} |")
print()
print("Runs (requests/s by round):")
for key in labels:
    for size in (1, 256):
        print(f"    {key}, {size} songs: " + ", ".join(f"{r['requests_per_s']:.0f}" for r in rows if r["server"] == key and r["rows"] == size))
PY
