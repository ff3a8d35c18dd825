#!/usr/bin/env bash
# Real requests beside slow uploads: starts `hitgpu serve` (Release, --quiet, default limits) on a free loopback
# port, then times SECONDS of sequential 3-song KServe v2 infer requests from one keep-alive client, first on
# the idle server, then while TRICKLERS (260) raw connections each announce a 4,000-byte body and send 2 bytes
# of it every 100 ms (one that is answered, 503 or 408, connects again at once). Prints the real requests'
# statuses and latency percentiles for both phases, and what the tricklers got.
# Env: SECONDS (10 per phase), TRICKLERS (260).
measure_s=$(printenv SECONDS || echo 10)
set -euo pipefail
cd "$(dirname "$0")/../.."
tricklers=${TRICKLERS:-260}

source bench/serve/common.sh
build src/HitGpu.Cli
hitgpu=(dotnet src/HitGpu.Cli/bin/Release/net10.0/hitgpu.dll)
"${hitgpu[@]}" train --study --epochs 3 --out "$tmp/model.hitgpu" >"$tmp/train.log" 2>&1 || { cat "$tmp/train.log" >&2; exit 1; }
port=$(free_port)
start_server "hitgpu serve" "${hitgpu[@]}" serve --model "$tmp/model.hitgpu" --name hits --port "$port" --quiet
echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo -); $(nproc) cores; $tricklers tricklers; $measure_s s a phase"
python3 - "$port" "$measure_s" "$tricklers" <<'PY'
import asyncio, http.client, json, statistics, sys, threading, time
port, seconds, tricklers = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
song = [0.7, 0.8, 5, -5.2, 1, 0.05, 0.1, 0, 0.1, 0.6, 120, 210000, 4, 30, 10]
body = json.dumps({"inputs": [{"name": "features", "shape": [3, 15], "datatype": "FP32", "data": song * 3}]}).encode()

def real(label):
    connection = http.client.HTTPConnection("127.0.0.1", port)
    latencies, statuses, end = [], {}, time.monotonic() + seconds
    while time.monotonic() < end:
        start = time.perf_counter()
        connection.request("POST", "/v2/models/hits/infer", body, {"Content-Type": "application/json"})
        answer = connection.getresponse()
        text = answer.read()
        if answer.status != 200:
            refusals[text] = refusals.get(text, 0) + 1
        latencies.append((time.perf_counter() - start) * 1000)
        statuses[answer.status] = statuses.get(answer.status, 0) + 1
        if answer.getheader("Connection", "").lower() == "close":
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port)
    latencies.sort()
    q = lambda p: latencies[min(len(latencies) - 1, int(p * len(latencies)))]
    print(f"| {label} | {len(latencies)} | {statuses} | {q(0.5):.2f} | {q(0.99):.2f} | {latencies[-1]:.2f} |")

refusals, got = {}, {}
async def trickle(stop):
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /v2/models/hits/infer HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n\r\n[")
            answer = asyncio.ensure_future(reader.read(64))
            while not answer.done() and not stop.is_set():
                writer.write(b"  ")
                await asyncio.wait([answer], timeout=0.1)
            head = (answer.result() if answer.done() else b"").decode("ascii", "replace")
            answer.cancel()
            status = head[9:12] if head.startswith("HTTP/1.1 ") else ("none" if answer.done() else "still trickling")
            got[status] = got.get(status, 0) + 1
            writer.close()
        except (ConnectionError, OSError):
            got["connection error"] = got.get("connection error", 0) + 1
            await asyncio.sleep(0.1)

def trickling(stop):
    async def main():
        flag = asyncio.Event()
        async def watch():
            while not stop.is_set():
                await asyncio.sleep(0.05)
            flag.set()
        await asyncio.gather(watch(), *(trickle(flag) for _ in range(tricklers)))
    asyncio.run(main())

print("| phase | real requests | statuses | p50 ms | p99 ms | max ms |")
print("|---|---:|---|---:|---:|---:|")
real("idle")
stop = threading.Event()
thread = threading.Thread(target=trickling, args=(stop,))
thread.start()
time.sleep(2)  # every trickler connected and sending
real(f"{tricklers} trickling uploads")
stop.set()
thread.join()
print("tricklers got:", dict(sorted(got.items())))
for text, n in refusals.items():
    print(f"real requests refused {n} times: {text.decode()}")
PY
