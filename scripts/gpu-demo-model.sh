#!/usr/bin/env bash
# On the GPU machine: train the demo model (scripts/make_demo_model.py) from the text scripts/fetch_demo_text.sh
# fetched on the dev machine (carry .demo-text), check wick (a CPU build) against transformers on it, and bring back
# RESULTS_DIR/demo.tar (models/wick-demo, models/styles, models/adapters, tests/fixtures/demo; unpack at the
# repository root) and RESULTS_DIR/demo.log.
# usage: scripts/gpu-demo-model.sh RESULTS_DIR
set -uo pipefail
results=${1:?usage: scripts/gpu-demo-model.sh RESULTS_DIR}
mkdir -p "$results"
results=$(cd "$results" && pwd)
cd "$(dirname "$0")/.."
log=$results/demo.log
source scripts/deb-prefix.sh
[ -f .demo-text/raw/kjv.txt ] || { echo "no .demo-text/raw: run scripts/fetch_demo_text.sh and carry .demo-text" | tee "$log"; exit 1; }

t0=$(date +%s)
cmake -S . -B build-demo -G Ninja -DCMAKE_BUILD_TYPE=Release -DWICK_CUDA=OFF -DWICK_TESTS=OFF -DWICK_BENCH=OFF \
  >"$results/build.log" 2>&1 && timeout 300 cmake --build build-demo -j"$(nproc)" --target wick_cli >>"$results/build.log" 2>&1
echo "wick CPU build: exit $? in $(( $(date +%s) - t0 )) s" | tee "$log"
wick=build-demo/wick
[ -x "$wick" ] || wick=""

t0=$(date +%s)
timeout 420 python3 scripts/make_demo_model.py --text .demo-text/raw ${wick:+--wick "$wick"} 2>&1 | tee -a "$log"
echo "make_demo_model: exit ${PIPESTATUS[0]} in $(( $(date +%s) - t0 )) s" | tee -a "$log"
tar cf "$results/demo.tar" models/wick-demo models/styles models/adapters tests/fixtures/demo 2>>"$log"
ls -la "$results" >>"$log"
