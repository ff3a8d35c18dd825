# What the bench/serve scripts share, sourced by each (from the repository's root): a Release build of a project,
# a scratch folder removed at exit with the server started, a free loopback port, and starting and stopping a
# server that answers /v2/health/ready.

# build PROJECT: a Release build, its log shown only when it fails.
build() {
  local log
  if ! log=$(dotnet build -c Release -nologo "$1" 2>&1); then
    printf '%s\n' "$log" >&2
    exit 1
  fi
}

tmp=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill -KILL "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
  local port
  for _ in $(seq 100); do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return; fi
  done
  echo "no free port" >&2
  exit 1
}

# start_server LABEL COMMAND...: starts it in the background (its pid in server_pid) and waits until it is ready
# on $port.
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
