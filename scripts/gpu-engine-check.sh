#!/usr/bin/env bash
# On a GPU machine: the engine's device path checked and measured in one go - the paged ops, summaries and recorded
# paged steps against their CPU twins, the CUDA engine against the CPU engine, compute-sanitizer memcheck on them,
# and the engine benchmarks beside single-sequence decode in the same run. Logs and summary.txt go into the folder.
# usage: scripts/gpu-engine-check.sh RESULTS_DIR [BENCH_FILTER] [all|tests|bench]
#   tests or bench alone: each fits one 10-minute device call (the build is kept between calls on a warm machine).
set -uo pipefail
out=${1:?usage: scripts/gpu-engine-check.sh RESULTS_DIR [BENCH_FILTER] [all|tests|bench]}
filter=${2:-BM_EngineDecode/cuda|BM_EngineServe/cuda|BM_EngineSharedPrefix/cuda|BM_Decode/cuda_qwen2_5_0_5b/256}
stage=${3:-all}
# Every step stops by the deadline (a device call has ten minutes): SECONDS_LEFT from the start, default 580.
deadline=$(( $(date +%s) + ${SECONDS_LEFT:-580} ))
left() { echo $(( deadline - $(date +%s) > 1 ? deadline - $(date +%s) : 1 )); }
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.."
summary=$out/summary.txt
: >"$summary"
note() { echo "$*" | tee -a "$summary"; }
source scripts/deb-prefix.sh

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$summary"
build=build-gpu
t0=$(date +%s)
cmake -S . -B $build -G Ninja -DCMAKE_BUILD_TYPE=Release -DWICK_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
  >"$out/configure.log" 2>&1 || { note "configure FAILED"; exit 1; }
if ! timeout "$(left)" cmake --build $build -j"$(nproc)" --target wick_backend_tests wick_model_tests wick_engine_tests \
     wick-bench >"$out/build.log" 2>&1; then
  note "build FAILED"; grep -E "error|FAILED" "$out/build.log" | head -30; exit 1
fi
note "build: $(( $(date +%s) - t0 )) s"

if [ "$stage" != bench ]; then
run_tests() {  # NAME BINARY FILTER
  timeout "$(( $(left) < 120 ? $(left) : 120 ))" "$2" --gtest_filter="$3" >"$out/$1.log" 2>&1
  note "$1: exit $? ($(grep -E '^\[  (PASSED|FAILED)' "$out/$1.log" | tr '\n' ' '))"
  grep -E "^\[  FAILED|Failure|Expected|Which is|relative" "$out/$1.log" | head -20 | tee -a "$summary"
}
run_tests backend_paged $build/tests/wick_backend_tests '*Paged*:*Summary*:CudaModel*:CudaFusedRows*'
run_tests model_paged $build/tests/wick_model_tests 'PagedForward*'
run_tests engine $build/tests/wick_engine_tests '*'
fi
[ "$stage" = tests ] && exit 0

export WICK_BENCH_MODELS=${WICK_BENCH_MODELS:-/tmp/wick-bench-models}
# The first request of a fresh process: alone in its process (after a run that makes the model, untimed).
timeout "$(left)" $build/bench/wick-bench --benchmark_filter='BM_FirstPrefill/cuda' >/dev/null 2>&1
timeout "$(left)" $build/bench/wick-bench --benchmark_filter='BM_FirstPrefill/cuda' >"$out/first_prefill.log" 2>&1
grep -E "^BM_|rror" "$out/first_prefill.log" | tee -a "$summary"
# shellcheck disable=SC2086  # BENCH_ARGS is a list of arguments
timeout "$(left)" $build/bench/wick-bench --benchmark_filter="$filter" --benchmark_out="$out/bench.json" \
  --benchmark_out_format=json ${BENCH_ARGS:-} >"$out/bench.log" 2>&1
note "bench ($filter): exit $?"
grep -E "^BM_|rror" "$out/bench.log" | tee -a "$summary"

# Last: memcheck of the new kernels, in what time is left.
[ "$stage" = bench ] && exit 0
if command -v compute-sanitizer >/dev/null; then
  timeout "$(left)" compute-sanitizer --tool memcheck --error-exitcode 9 $build/tests/wick_backend_tests \
    --gtest_filter='*Paged*:*Summary*:CudaFusedRows*' >"$out/memcheck_ops.log" 2>&1
  note "memcheck paged ops: exit $? ($(tail -1 "$out/memcheck_ops.log"))"
  timeout "$(left)" compute-sanitizer --tool memcheck --error-exitcode 9 $build/tests/wick_engine_tests \
    --gtest_filter='Engine.Cuda*' >"$out/memcheck_engine.log" 2>&1
  note "memcheck engine: exit $? ($(tail -1 "$out/memcheck_engine.log"))"
fi
