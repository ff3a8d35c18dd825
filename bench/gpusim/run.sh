#!/usr/bin/env bash
# The project's CUDA tests on a simulated GPU (GPGPU-Sim 4.2; bench/gpusim/build.sh builds it, or reuses a build).
#
#   bash bench/gpusim/run.sh                 functional mode (SM7_QV100): every kernel test of tests/HitGpu.Kernels.Tests
#                                            and the CLI's and the server's CUDA runs, held to the CPU accelerator
#   MODE=timing bash bench/gpusim/run.sh     the same with the cycle model (SM86_RTX3070: cycles and IPC per launch)
#
# Env: MODE (functional|timing), CONFIG (a configuration of the kit; default SM7_QV100 functional, SM86_RTX3070
# timing), KERNEL_TESTS / NN_TESTS / SERVE_TESTS (xunit filter arguments for each test program; "skip" leaves it
# out), OUT (the run folders and logs; default /tmp/hitgpu-gpusim), GPUSIM (the simulator's prefix).
# Each test program runs as its own dll, not through `dotnet test`, so that the simulator's log is kept
# ($OUT/<job>.log). Ends with the table of every kernel that ran (bench/gpusim/kernels.py) and the runners'
# closing line "N passed, M failed"; exits non-zero if a test failed, a launch could not be named, or (the whole
# set in functional mode) a kernel of the GPU catalog never ran.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
MODE=${MODE:-functional}
case "$MODE" in
  functional) CONFIG=${CONFIG:-SM7_QV100} ;;
  timing) CONFIG=${CONFIG:-SM86_RTX3070} ;;
  *) echo "MODE is functional or timing, not $MODE" >&2; exit 2 ;;
esac
OUT=${OUT:-/tmp/hitgpu-gpusim}
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
T0=$(date +%s)
say() { echo "[gpusim run $(( $(date +%s) - T0 ))s] $*"; }

say "building the simulated GPU (log: \${GPUSIM:-/tmp/gpusim}/build.log)"
GPUSIM=$(bash "$ROOT/bench/gpusim/build.sh" | tail -n 1)
# shellcheck disable=SC1091
source "$GPUSIM/env.sh"

say "building the test programs"
for p in HitGpu.Kernels.Tests HitGpu.Nn.Tests HitGpu.Serve.Tests; do
  nice dotnet build "$ROOT/tests/$p" -c Release -v q -nologo -clp:ErrorsOnly >/dev/null
done

rm -rf "$OUT"; mkdir -p "$OUT"
# One test program in a folder of its own holding the configuration; its log and runner summary under $OUT/JOB.
run_tests() { # job, program, filter arguments
  local job=$1 program=$2 filter=$3 dir="$OUT/$1"
  [ "$filter" = skip ] && return 0
  mkdir -p "$dir"
  cp -r "$ROOT/tests/$program/bin/Release/net10.0/." "$dir/"
  bash "$GPUSIM/scripts/use-config.sh" "$CONFIG" "$dir" "$MODE" >/dev/null
  say "$job: $program on the simulated GPU ($CONFIG, $MODE) $filter"
  local start rc=0
  start=$(date +%s)
  # shellcheck disable=SC2086
  (cd "$dir" && HITGPU_TEST_ACCELERATOR=cuda HITGPU_KERNEL_TRACE=1 HITGPU_SIMULATED_GPU=1 \
      nice dotnet "$program.dll" -noColor -xml "$OUT/$job.xml" $filter) > "$OUT/$job.log" 2>&1 || rc=$?
  local summary
  summary=$(grep -E "^\s*$program\s+Total:" "$OUT/$job.log" | tail -n 1 || true)
  if [ -z "$summary" ]; then
    echo "$job: the runner did not finish (exit $rc); the end of its log:"; tail -n 30 "$OUT/$job.log"
    echo "0 0 1 0" > "$OUT/$job.counts"
  else
    sed -E 's/.*Total: ([0-9]+), Errors: ([0-9]+), Failed: ([0-9]+), Skipped: ([0-9]+).*/\1 \2 \3 \4/' <<<"$summary" > "$OUT/$job.counts"
    grep -E "\[FAIL\]" "$OUT/$job.log" | sed "s/^/  $job: /" || true
    say "$job: $summary ($(( $(date +%s) - start )) s)"
  fi
}

# Two lanes, one simulation a core: the dense layer's tests beside the other kernels', then the CLI's and the
# server's CUDA runs. A filter given for the kernel tests runs them in one lane.
if [ -z "${KERNEL_TESTS:-}" ]; then
  run_tests kernels-dense HitGpu.Kernels.Tests "-class HitGpu.Kernels.Tests.DenseTests" &
  lane=$!
  run_tests kernels HitGpu.Kernels.Tests "-class- HitGpu.Kernels.Tests.DenseTests"
else
  lane=
  run_tests kernels HitGpu.Kernels.Tests "$KERNEL_TESTS"
fi
run_tests cli HitGpu.Nn.Tests "${NN_TESTS:--class HitGpu.Nn.Tests.CudaCliTests}"
run_tests serve HitGpu.Serve.Tests "${SERVE_TESTS:--class HitGpu.Serve.Tests.CudaServeTests}"
[ -n "$lane" ] && wait "$lane"

passed=0; failed=0; skipped=0; logs=()
for counts in "$OUT"/*.counts; do
  read -r total errors fails skips < "$counts"
  passed=$((passed + total - errors - fails - skips)); failed=$((failed + errors + fails)); skipped=$((skipped + skips))
  logs+=("${counts%.counts}.log")
done
echo
echo "Kernels on the simulated GPU ($CONFIG, $MODE mode):"
table_rc=0
python3 "$ROOT/bench/gpusim/kernels.py" "${logs[@]}" | tee "$OUT/kernels.md" || table_rc=$?
if [ -z "${KERNEL_TESTS:-}" ] && [ "$MODE" = functional ] && grep -q "^not executed:" "$OUT/kernels.md"; then
  echo "the whole functional set left kernels of the GPU catalog unexecuted"; table_rc=1
fi
say "done"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] && [ "$table_rc" -eq 0 ]
