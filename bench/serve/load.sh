#!/usr/bin/env bash
# Load benchmark of `hitgpu serve` beside the ONNX Runtime peer a .NET team would write (bench/ServePeer): trains one
# model with the CLI defaults, exports it to ONNX, then runs the two servers in alternating rounds (hitgpu, peer,
# hitgpu, peer, ...: each alone on free loopback ports, started afresh each round) under two load generators, with 1
# and 256 songs per KServe v2 infer request:
#   - ServeLoad (bench/ServeLoad, ours): REST JSON; REST with the binary tensor data extension both ways; gRPC
#     ModelInfer with raw_input_contents (hitgpu serve --grpc-port);
#   - autocannon (npm, independent; installed on first use into the git-ignored bench/serve/.autocannon): REST JSON
#     and REST binary, one fixed body each.
# The peer speaks REST JSON only: it is measured in that case, by both generators. Every case checks its answers
# before it is timed: ServeLoad checks every body's answer (the count, each a probability, and binary and gRPC the
# same bits as REST JSON's answer for the same songs); autocannon sends the first of those bodies, checked so.
# Prints a markdown table of the medians over the rounds with their min-max spread. hitgpu serve runs with --quiet
# (the peer logs no request either) and its default batching on the CPU (no window).
# Env: CLIENTS (connections, default 64), SECONDS (measured seconds per run, default 5), WARMUP (default 2),
# ROUNDS (default 3). With the defaults a whole run takes about 6 minutes (14 timed runs a round).
# SECONDS is bash's own clock: take the caller's value before it ticks (printenv fails when the caller set none).
measure_s=$(printenv SECONDS || echo 5)
set -euo pipefail
cd "$(dirname "$0")/../.."
clients=${CLIENTS:-64}
warmup_s=${WARMUP:-2}
rounds=${ROUNDS:-3}
autocannon_version=8.0.0

source bench/serve/common.sh
build src/HitGpu.Cli
build bench/ServePeer
build bench/ServeLoad
hitgpu=(dotnet src/HitGpu.Cli/bin/Release/net10.0/hitgpu.dll)
peer=(dotnet bench/ServePeer/bin/Release/net10.0/ServePeer.dll)
load=(dotnet bench/ServeLoad/bin/Release/net10.0/ServeLoad.dll)

node_dir=bench/serve/.autocannon
if [ "$(node -p "try { require('./$node_dir/node_modules/autocannon/package.json').version } catch { '' }")" != "$autocannon_version" ]; then
  npm install --prefix "$node_dir" --no-audit --no-fund --no-save --loglevel error "autocannon@$autocannon_version" >/dev/null
fi
export NODE_PATH=$PWD/$node_dir/node_modules

"${hitgpu[@]}" train --out "$tmp/model.hitgpu" >"$tmp/train.log" 2>&1 || { cat "$tmp/train.log" >&2; exit 1; }
"${hitgpu[@]}" export --model "$tmp/model.hitgpu" --onnx "$tmp/model.onnx" >/dev/null
gunzip -c src/HitGpu.Nn/Data/dataset-of-90s.csv.gz >"$tmp/songs.csv"

results="$tmp/results.jsonl"
: >"$results"
# record KEY JSON: one run's line, tagged with the server and round; a run that printed nothing stops the benchmark.
record() {
  if [ -z "$2" ]; then echo "a run against $1 printed no result (round $round)" >&2; exit 1; fi
  echo "{\"server\":\"$1\",\"round\":$round,${2#\{}" >>"$results"
}

# measure KEY PROTOCOLS...: each protocol and both request sizes against the server that is up, by ServeLoad, then the
# REST ones by autocannon with the bodies ServeLoad checked (REST forms only: binary's check writes json's body too).
measure() {
  local key=$1 rows protocol json bodies infer="http://127.0.0.1:$port/v2/models/hit/infer"; shift
  for rows in 1 256; do
    bodies="$tmp/bodies-$rows"
    rm -rf "$bodies"
    "${load[@]}" --url "$infer" --data "$tmp/songs.csv" --clients "$clients" --rows "$rows" \
      --protocol "$([[ " $* " == *" binary "* ]] && echo binary || echo json)" --write "$bodies" >/dev/null
    for protocol in "$@"; do
      json=$("${load[@]}" --url "$infer" --grpc "http://127.0.0.1:$grpc_port" --protocol "$protocol" --data "$tmp/songs.csv" \
        --clients "$clients" --seconds "$measure_s" --warmup "$warmup_s" --rows "$rows" --pid "$server_pid") || true
      record "$key" "$json"
    done
    for protocol in "$@"; do
      case $protocol in
        json) json=$(node bench/serve/autocannon.js "$infer" "$bodies/json.body" application/json - "$clients" "$warmup_s" "$measure_s" \
          "$rows" "$server_pid" json) || true ;;
        binary) json=$(node bench/serve/autocannon.js "$infer" "$bodies/binary.body" application/octet-stream \
          "$(cat "$bodies/binary.header-length")" "$clients" "$warmup_s" "$measure_s" "$rows" "$server_pid" binary) || true ;;
        *) continue ;;
      esac
      record "$key" "$json"
    done
  done
}

started=$(date -u '+%Y-%m-%d %H:%M')
for round in $(seq "$rounds"); do
  for server in hitgpu peer; do
    port=$(free_port)
    grpc_port=$(free_port)
    case $server in
      hitgpu)
        start_server "$server" "${hitgpu[@]}" serve --model "$tmp/model.hitgpu" --name hit --host 127.0.0.1 --port "$port" \
          --grpc-port "$grpc_port" --quiet
        measure "$server" json binary grpc ;;
      peer)
        start_server "$server" "${peer[@]}" --model "$tmp/model.onnx" --name hit --urls "http://127.0.0.1:$port"
        measure "$server" json ;;
    esac
    stop_server
  done
done

commit=$(git rev-parse --short HEAD)
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then commit="$commit (with uncommitted changes)"; fi
echo "Serving load: $clients connections, ${measure_s} s measured after ${warmup_s} s warm-up per run, $rounds rounds (hitgpu serve and the"
echo "peer in turn, one at a time on loopback, the load generator on the same machine); autocannon $autocannon_version, node $(node --version)."
echo "Machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1); .NET $(dotnet --version);"
echo "$started to $(date -u '+%H:%M UTC'); commit $commit; load average at the end $(cut -d' ' -f1-3 /proc/loadavg)."
echo "Medians over the rounds, [min-max] across them; errors summed (refusals, wrong answers, timeouts)."
echo
python3 - "$results" <<'PY'
import json, statistics, sys
runs = [json.loads(line) for line in open(sys.argv[1])]
servers = {"hitgpu": "hitgpu serve", "peer": "ONNX Runtime peer"}
cases = {"json": "REST JSON", "binary": "REST binary", "grpc": "gRPC raw"}
def pick(server, generator, protocol, rows):
    return [r for r in runs if (r["server"], r["generator"], r["protocol"], r["rows"]) == (server, generator, protocol, rows)]
def values(rs, key):
    return [r[key] for r in rs if r.get(key) is not None]
def med(rs, key):
    v = values(rs, key)
    return statistics.median(v) if v else float("nan")
def spread(rs, key, digits):
    v = values(rs, key)
    if not v:
        return "n/a"
    return f"{statistics.median(v):,.{digits}f} [{min(v):,.{digits}f}-{max(v):,.{digits}f}]"
print("| server | generator | case | songs/request | songs/s | vs REST JSON | vs peer | p50 ms | p99 ms | errors |"
      " server CPU ms/request | generator cores |")
print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for rows in (1, 256):
    for generator in ("ServeLoad", "autocannon"):
        peer = med(pick("peer", generator, "json", rows), "songs_per_s")
        for server, label in servers.items():
            own_json = med(pick(server, generator, "json", rows), "songs_per_s")
            for protocol, case in cases.items():
                rs = pick(server, generator, protocol, rows)
                if not rs:
                    continue
                rate = med(rs, "songs_per_s")
                print(f"| {label} | {generator} | {case} | {rows} | {spread(rs, 'songs_per_s', 0)} | {rate / own_json:.2f} | {rate / peer:.2f} | "
                      f"{spread(rs, 'p50_ms', 2)} | {spread(rs, 'p99_ms', 2)} | {sum(r['errors'] for r in rs)} | "
                      f"{med(rs, 'server_cpu_ms_per_request'):.3f} | {med(rs, 'client_cores_busy'):.2f} |")
print()
print("Goals, from the medians (and per round: the worst round of hitgpu serve against the best of the peer):")
for generator in ("ServeLoad", "autocannon"):
    base = med(pick("hitgpu", generator, "json", 256), "songs_per_s")
    for protocol in ("binary", "grpc"):
        rs = pick("hitgpu", generator, protocol, 256)
        if rs:
            ratio = med(rs, "songs_per_s") / base
            print(f"- {generator}, 256 songs: {cases[protocol]} {ratio:.2f} x REST JSON's songs/s: {'holds' if ratio >= 1.5 else 'NOT met'} (goal 1.5 x)")
for rows in (1, 256):
    for generator in ("ServeLoad", "autocannon"):
        peer = pick("peer", generator, "json", rows)
        for protocol, case in cases.items():
            rs = pick("hitgpu", generator, protocol, rows)
            if not rs or not peer:
                continue
            ahead = med(rs, "songs_per_s") > med(peer, "songs_per_s")
            every = min(values(rs, "songs_per_s")) > max(values(peer, "songs_per_s"))
            print(f"- {generator}, {rows} songs, {case}: {'ahead of' if ahead else 'NOT ahead of'} the peer's REST JSON"
                  f"{' in every round' if every else ' (not in every round)' if ahead else ''}")
print()
print("Runs (songs/s by round):")
for server in servers:
    for generator in ("ServeLoad", "autocannon"):
        for protocol in cases:
            for rows in (1, 256):
                rs = pick(server, generator, protocol, rows)
                if rs:
                    print(f"    {server}, {generator}, {protocol}, {rows}: " + ", ".join(f"{r['songs_per_s']:.0f}" for r in rs))
PY
