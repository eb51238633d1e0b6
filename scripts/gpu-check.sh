#!/usr/bin/env bash
# On a GPU machine: build wick for Hopper, run every test (the CUDA ones included), compute-sanitizer
# memcheck on the CUDA tests, and the GPU benchmarks. Logs and summary.txt go into the folder given.
# Debian packages the machine lacks (it has no network) come as .deb files in .deb/ and are unpacked
# into .prefix/, never into /.
# usage: scripts/gpu-check.sh RESULTS_DIR [BENCH_FILTER]
set -uo pipefail
out=${1:?usage: scripts/gpu-check.sh RESULTS_DIR [BENCH_FILTER]}
filter=${2:-cuda|Cuda|Bandwidth}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.."
summary=$out/summary.txt
: >"$summary"
note() { echo "$*" | tee -a "$summary"; }

if compgen -G ".deb/*.deb" >/dev/null; then
  for f in .deb/*.deb; do dpkg -x "$f" .prefix; done
  prefix=$PWD/.prefix/usr
  for pc in "$prefix"/lib/x86_64-linux-gnu/pkgconfig/*.pc; do sed -i "s|^prefix=.*|prefix=$prefix|" "$pc"; done
  export PKG_CONFIG_PATH=$prefix/lib/x86_64-linux-gnu/pkgconfig:${PKG_CONFIG_PATH:-}
  export LD_LIBRARY_PATH=$prefix/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
  export CMAKE_PREFIX_PATH=$prefix:${CMAKE_PREFIX_PATH:-}
fi

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv | tee -a "$summary"
build=build-gpu
t0=$(date +%s)
if ! cmake -S . -B $build -G Ninja -DCMAKE_BUILD_TYPE=Release -DWICK_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
     >"$out/configure.log" 2>&1; then
  note "configure FAILED"; tail -30 "$out/configure.log"; exit 1
fi
if ! cmake --build $build -j"$(nproc)" >"$out/build.log" 2>&1; then
  note "build FAILED"; grep -E "error|FAILED" "$out/build.log" | head -30; exit 1
fi
note "build: $(( $(date +%s) - t0 )) s"

ctest --test-dir $build --output-on-failure -j8 >"$out/ctest.log" 2>&1
note "ctest: $(grep -E 'tests passed|tests failed' "$out/ctest.log")"
grep -E "^\s+[0-9]+ - .*(Failed|Timeout)" "$out/ctest.log" | head -20 | tee -a "$summary"
$build/tests/wick_backend_tests --gtest_filter='*CudaModel*' 2>&1 | grep -E "relative L2|parts from|SKIPPED|FAILED" | tee -a "$summary"

if command -v compute-sanitizer >/dev/null; then
  compute-sanitizer --tool memcheck --leak-check full --error-exitcode 9 $build/tests/wick_backend_tests \
    >"$out/memcheck.log" 2>&1
  note "compute-sanitizer memcheck: exit $? ($(grep -c 'Invalid' "$out/memcheck.log") invalid accesses; $(tail -1 "$out/memcheck.log"))"
fi

export WICK_BENCH_MODELS=${WICK_BENCH_MODELS:-/tmp/wick-bench-models}
$build/bench/wick-bench --benchmark_filter="$filter" --benchmark_out="$out/bench.json" --benchmark_out_format=json \
  >"$out/bench.log" 2>&1
note "bench ($filter):"
grep -E "^BM_" "$out/bench.log" | tee -a "$summary"
