#!/usr/bin/env bash
# On a GPU machine, issue 24's checks in one session (command M of docs/BENCHMARKS.md):
#   1. scripts/make_embed_fixtures.py (tokenizers, sentencepiece, transformers, sentence-transformers) writes the
#      reference folders beside the build; they are copied into tests/fixtures/embed here and packed into
#      RESULTS_DIR/embed.tgz (commit them from there: the CPU suite's StParity and EmbedTokenizerReference tests read
#      them; a tarball, since a device call brings back only so many files);
#   2. the CUDA encoder ops' tests, then the parity tests on the CPU (f32) and on CUDA (bf16);
#   3. BM_Embed on CUDA, then scripts/bench_embed_transformers.py on the same folders and ids.
# usage: scripts/gpu-embed-check.sh RESULTS_DIR   (summary in RESULTS_DIR/summary.txt, logs beside it)
set -uo pipefail
out=${1:?usage: scripts/gpu-embed-check.sh RESULTS_DIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.." || exit 1
exec > >(tee "$out/summary.txt") 2>&1
source scripts/deb-prefix.sh
t0=$(date +%s)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
# The fixtures on 4 cores beside the build (they take about as long).
fixture_dir=$(mktemp -d)
(OMP_NUM_THREADS=4 PYTHONUNBUFFERED=1 timeout 300 taskset -c 12-15 python3 scripts/make_embed_fixtures.py \
   --out "$fixture_dir/embed" >"$out/embed.log" 2>&1) &
fixtures=$!
build="build-gpu"
cmake -S . -B $build -G Ninja -DCMAKE_BUILD_TYPE=Release -DWICK_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DWICK_SERVE=OFF \
  >"$out/configure.log" 2>&1 || { echo "configure FAILED"; tail -20 "$out/configure.log"; exit 1; }
timeout 300 taskset -c 0-11 cmake --build $build -j12 --target wick-bench wick_embed_tests wick_tokenizer_tests \
  wick_backend_tests >"$out/build.log" 2>&1 || { echo "build FAILED"; grep -E "error" -A3 "$out/build.log" | head -30; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"
suite() {  # name, binary, filter
  timeout 120 "$2" --gtest_filter="$3" >"$out/$1.log" 2>&1
  echo "$1: exit $? $(grep -E '^\[  (PASSED|FAILED)' "$out/$1.log" | tr '\n' ' ')"
  grep -E "^\[  FAILED|Failure|parity   \]" "$out/$1.log" | head -40
}
suite cuda_encoder $build/tests/wick_backend_tests 'CudaEncoder*:MpnetBucket*:CudaOps.*'
export WICK_BENCH_MODELS=${WICK_BENCH_MODELS:-/tmp/wick-bench-models}
timeout 120 $build/bench/wick-bench --benchmark_filter='BM_Embed/cuda' 2>&1 | grep -E "^BM_|rror"
timeout 120 python3 scripts/bench_embed_transformers.py --rounds 3 --model "minilm-l6=$WICK_BENCH_MODELS/minilm-l6-bf16" \
  --model "bert-base=$WICK_BENCH_MODELS/bert-base-bf16" 2>&1 | grep "^{"
echo "bench: $(( $(date +%s) - t0 )) s"
wait $fixtures
echo "fixtures: exit $? ($(tail -1 "$out/embed.log"))"
mkdir -p tests/fixtures/embed && cp -r "$fixture_dir/embed/." tests/fixtures/embed/
tar czf "$out/embed.tgz" -C "$fixture_dir" embed
suite parity $build/tests/wick_embed_tests '*StParity*'
suite tokenizer_parity $build/tests/wick_tokenizer_tests '*EmbedTokenizerReference*'
echo "end: $(( $(date +%s) - t0 )) s"
