#!/usr/bin/env bash
# On a GPU machine: why a decode step of 32 sequences takes what it takes (issue 21). Nsight Compute on the few-row
# kernels and the attention of recorded engine steps of BM_EngineDecode (32 sequences, no adapters): each kernel's
# time, DRAM and memory throughput, L1 and L2 hit rates, achieved occupancy and cycles per issued instruction (the
# sections SpeedOfLight, MemoryWorkloadAnalysis, Occupancy, WarpStateStats), into OUT/rows.csv (one row per launch
# and metric) and OUT/summary.txt (per kernel: the means).
# usage: scripts/gpu-profile-rows.sh OUT [SEQS]   (SEQS: 32 by default; 8, 16 and 64 are the engine bench's others)
set -uo pipefail
out=${1:?usage: scripts/gpu-profile-rows.sh OUT [SEQS]}
seqs=${2:-32}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.." || exit 1
source scripts/deb-prefix.sh
build=build-gpu
[ -f $build/build.ninja ] || cmake -S . -B $build -G Ninja -DCMAKE_BUILD_TYPE=Release -DWICK_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES=90 -DWICK_SERVE=OFF >"$out/configure.log" 2>&1
timeout 300 cmake --build $build -j"$(nproc)" --target wick-bench >"$out/build.log" 2>&1 || { echo "build FAILED"; exit 1; }
export WICK_BENCH_MODELS=${WICK_BENCH_MODELS:-/tmp/wick-bench-models}
filter="BM_EngineDecode/cuda_qwen2_5_0_5b/seqs:$seqs/adapters:0"
timeout 120 $build/bench/wick-bench --benchmark_filter="$filter" >/dev/null 2>&1  # makes the model, warms the caches
# Past the prefill and the first steps: steady-state decode steps, replayed from graphs (each node one launch).
timeout 400 ncu --clock-control none --graph-profiling node --section SpeedOfLight --section MemoryWorkloadAnalysis \
  --section Occupancy --section WarpStateStats --csv --page details --launch-skip 3000 --launch-count 300 \
  -k regex:'fused_rows|attention|nvjet|summar|rmsnorm' \
  $build/bench/wick-bench --benchmark_filter="$filter" >"$out/rows.csv" 2>"$out/ncu.err"
echo "ncu: exit $? ($(wc -l <"$out/rows.csv") lines)"
python3 - "$out/rows.csv" <<'PY' | tee "$out/summary.txt"
import csv, collections, sys
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
head, rows = rows[0], rows[1:]
k, m, u, v = (head.index(c) for c in ("Kernel Name", "Metric Name", "Metric Unit", "Metric Value"))
want = ["Duration", "DRAM Throughput", "Memory Throughput", "L1/TEX Hit Rate", "L2 Hit Rate", "Achieved Occupancy",
        "Warp Cycles Per Issued Instruction", "Registers Per Thread", "Block Size", "Grid Size"]
by = collections.defaultdict(lambda: collections.defaultdict(list))
units = {}
for r in rows:
    try:
        by[r[k].replace("void wick::cuda::", "")][r[m]].append(float(r[v].replace(",", "")))
        units[r[m]] = r[u]
    except ValueError:
        pass
total = lambda ms: sum(ms.get("Duration", [0]))
for name, ms in sorted(by.items(), key=lambda kv: -total(kv[1])):
    parts = [f"{w} {sum(ms[w]) / len(ms[w]):.1f} {units.get(w, '')}" for w in want if ms.get(w)]
    print(f"{name} (x{len(ms.get('Duration', []))}): " + "; ".join(parts))
PY
