#!/usr/bin/env bash
# On a machine with 2 or more GPUs: issue 25's checks in one go — the split model's tests over NCCL (TP = 2 against
# the whole model on the GPU, with an adapter, the paged pass), compute-sanitizer memcheck of one of them, and the
# decode benchmarks of the 0.5B and 7B shapes whole and split in the same run (command N of docs/BENCHMARKS.md).
# usage: scripts/gpu-tp-check.sh RESULTS_DIR [all|tests|bench]   (summary in RESULTS_DIR/summary.txt, logs beside it)
#   tests or bench alone: each fits one 10-minute device call (the build is kept between calls on a warm machine; the
#   first bench call also writes the random 7B model, 15 GB, into WICK_BENCH_MODELS).
set -uo pipefail
out=${1:?usage: scripts/gpu-tp-check.sh RESULTS_DIR [all|tests|bench]}
stage=${2:-all}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.." || exit 1
exec > >(tee "$out/summary.txt") 2>&1
source scripts/deb-prefix.sh
export NCCL_NVLS_ENABLE=0
# NCCL from the CUDA toolkit, else the one PyTorch's wheels bring.
nccl_dir=$(python3 -c 'import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], "lib"))' 2>/dev/null)
[ -n "$nccl_dir" ] && export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$nccl_dir"
t0=$(date +%s)
nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader
nvidia-smi topo -m 2>/dev/null | head -12
build=build-gpu
cmake -S . -B $build -G Ninja -DCMAKE_BUILD_TYPE=Release -DWICK_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DWICK_SERVE=OFF \
  >"$out/configure.log" 2>&1 || { echo "configure FAILED"; tail -20 "$out/configure.log"; exit 1; }
timeout 330 cmake --build $build -j"$(nproc)" --target wick-bench wick_model_tests wick_engine_tests wick_backend_tests wick_cli \
  >"$out/build.log" 2>&1 || { echo "build FAILED"; grep -E "error" -A3 "$out/build.log" | head -30; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"
suite() {  # name, binary, filter
  timeout 180 "$2" --gtest_filter="$3" >"$out/$1.log" 2>&1
  echo "$1: exit $? $(grep -E '^\[  (PASSED|FAILED)' "$out/$1.log" | tr '\n' ' ')"
  grep -E "^\[  FAILED|Failure|Expected|actual" "$out/$1.log" | head -20
}
if [ "$stage" != bench ]; then
suite collective $build/tests/wick_backend_tests 'NcclCollective.*:StagedCollective.*'
suite tp $build/tests/wick_model_tests 'TensorParallel.*:HostCollective.*'
suite engine_tp $build/tests/wick_engine_tests 'Engine.ASplit*'
if command -v compute-sanitizer >/dev/null; then
  timeout 240 compute-sanitizer --tool memcheck --error-exitcode 9 $build/tests/wick_model_tests \
    --gtest_filter='TensorParallel.CudaSplit*' >"$out/memcheck.log" 2>&1
  echo "memcheck: exit $? ($(tail -1 "$out/memcheck.log"))"
fi
fi
[ "$stage" = tests ] && exit 0
# A greedy run through the CLI, whole and split, on the same random 0.5B model: the same tokens expected.
export WICK_BENCH_MODELS=${WICK_BENCH_MODELS:-/tmp/wick-bench-models}
timeout 120 $build/bench/wick-bench --benchmark_filter='BM_Decode/cuda_qwen2_5_0_5b/256$' >/dev/null 2>&1  # makes the model
m="$WICK_BENCH_MODELS/qwen2.5-0.5b-bf16"
for n in 1 2; do
  timeout 120 $build/wick generate --model "$m" --tokens 1,2,3,4 --greedy --ignore-eos --max-tokens 32 --device cuda \
    --tensor-parallel $n --json >"$out/generate_tp$n.json" 2>&1
  echo "generate --tensor-parallel $n: exit $? $(head -c 300 "$out/generate_tp$n.json")"
done
timeout 600 $build/bench/wick-bench --benchmark_filter='BM_Decode/cuda_qwen2_5_(0_5b|7b)(_tp[24])?/|BM_EngineDecodeSplit/cuda' \
  --benchmark_out="$out/bench.json" --benchmark_out_format=json >"$out/bench.log" 2>&1
echo "bench: exit $?"
grep -E "^BM_|rror" "$out/bench.log"
echo "end: $(( $(date +%s) - t0 )) s"
