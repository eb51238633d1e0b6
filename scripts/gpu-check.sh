#!/usr/bin/env bash
# On a GPU machine: build wick for Hopper, run every test (the CUDA ones included), compute-sanitizer
# memcheck on the CUDA tests, and the GPU benchmarks. Logs and summary.txt go into the folder given.
# Debian packages the machine lacks (it has no network) come from .deb/ (scripts/deb-prefix.sh).
# usage: scripts/gpu-check.sh RESULTS_DIR [BENCH_FILTER] [--quick]
#   --quick: build only the backend and generation tests and wick-bench, run those two suites, and memcheck only
#            the CUDA kernels' own tests (fused decode, attention, adapters in decode, whole model): about half the
#            device time, for iterating on kernels. The full run is what an issue's "must show" asks for.
#   BENCH_ARGS (environment): more wick-bench arguments, e.g. "--benchmark_repetitions=5".
set -uo pipefail
out=${1:?usage: scripts/gpu-check.sh RESULTS_DIR [BENCH_FILTER] [--quick]}
filter=${2:-cuda|Cuda|Bandwidth}
quick=0
[ "${3:-}" = "--quick" ] && quick=1
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.."
summary=$out/summary.txt
: >"$summary"
note() { echo "$*" | tee -a "$summary"; }

source scripts/deb-prefix.sh

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv | tee -a "$summary"
build=build-gpu
t0=$(date +%s)
if ! cmake -S . -B $build -G Ninja -DCMAKE_BUILD_TYPE=Release -DWICK_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
     >"$out/configure.log" 2>&1; then
  note "configure FAILED"; tail -30 "$out/configure.log"; exit 1
fi
targets=()
[ $quick = 1 ] && targets=(--target wick_backend_tests wick_generate_tests wick-bench)
if ! cmake --build $build -j"$(nproc)" "${targets[@]}" >"$out/build.log" 2>&1; then
  note "build FAILED"; grep -E "error|FAILED" "$out/build.log" | head -30; exit 1
fi
note "build: $(( $(date +%s) - t0 )) s"

if [ $quick = 1 ]; then
  for suite in backend generate; do
    $build/tests/wick_${suite}_tests >"$out/${suite}_tests.log" 2>&1
    note "wick_${suite}_tests: exit $? ($(grep -E '^\[  (PASSED|FAILED)' "$out/${suite}_tests.log" | tr '\n' ' '))"
  done
else
  ctest --test-dir $build --output-on-failure -j8 >"$out/ctest.log" 2>&1
  note "ctest: $(grep -E 'tests passed|tests failed' "$out/ctest.log")"
  grep -E "^\s+[0-9]+ - .*(Failed|Timeout)" "$out/ctest.log" | head -20 | tee -a "$summary"
fi
$build/tests/wick_backend_tests --gtest_filter='*CudaModel*' 2>&1 | grep -E "relative L2|parts from|SKIPPED|FAILED" | tee -a "$summary"

if command -v compute-sanitizer >/dev/null; then
  only=()
  [ $quick = 1 ] && only=(--gtest_filter='*Fused*:*AdapterDecode*:CudaModel*:*Attention*')
  compute-sanitizer --tool memcheck --leak-check full --error-exitcode 9 $build/tests/wick_backend_tests "${only[@]}" \
    >"$out/memcheck.log" 2>&1
  note "compute-sanitizer memcheck: exit $? ($(grep -c 'Invalid' "$out/memcheck.log") invalid accesses; $(tail -1 "$out/memcheck.log"))"
fi

export WICK_BENCH_MODELS=${WICK_BENCH_MODELS:-/tmp/wick-bench-models}
# shellcheck disable=SC2086  # BENCH_ARGS is a list of arguments
$build/bench/wick-bench --benchmark_filter="$filter" --benchmark_out="$out/bench.json" --benchmark_out_format=json \
  ${BENCH_ARGS:-} >"$out/bench.log" 2>&1
note "bench ($filter):"
grep -E "^BM_" "$out/bench.log" | tee -a "$summary"

# Embeddings (issue 24): when the filter ran BM_Embed, transformers on the same random folders in the same session.
if grep -q "^BM_Embed/cuda" "$out/bench.log"; then
  note "transformers (fp16, SDPA) on the same folders:"
  python3 scripts/bench_embed_transformers.py --model "minilm-l6=$WICK_BENCH_MODELS/minilm-l6-bf16" \
    --model "bert-base=$WICK_BENCH_MODELS/bert-base-bf16" 2>&1 | tee -a "$summary"
fi
