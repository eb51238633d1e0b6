#!/usr/bin/env bash
# Side by side on one GPU machine: wick-bench built from another revision's sources and from this tree, run
# alternately so that both see the same machine, and a table of the figures of each round. Used to show that a
# change costs no speed (docs/BENCHMARKS.md says which figures).
# usage: scripts/compare-builds.sh OUT BASE_SRC [FILTER] [ROUNDS]
#   BASE_SRC: the other revision's tree, e.g. `mkdir -p /tmp/base && git archive REV | tar -x -C /tmp/base`
#   FILTER:   wick-bench --benchmark_filter (default: 0.5B and 7B decode and prefill, the adapter benchmark)
#   ROUNDS:   alternations (default 3)
# Both builds use CMAKE_BUILD_TYPE=Release, CUDA for Hopper; this tree's build goes to build-gpu (shared with
# scripts/gpu-check.sh), the other's to BASE_SRC/build-gpu. Debian packages the machine lacks come from .deb/
# (scripts/deb-prefix.sh). Models are made on first use in $WICK_BENCH_MODELS (default /tmp/wick-bench-models).
set -uo pipefail
out=${1:?usage: scripts/compare-builds.sh OUT BASE_SRC [FILTER] [ROUNDS]}
base=${2:?usage: scripts/compare-builds.sh OUT BASE_SRC [FILTER] [ROUNDS]}
filter=${3:-'BM_Decode/cuda_qwen2_5_0_5b/256|BM_Decode/cuda_qwen2_5_7b|BM_Prefill/cuda|CudaDecodeWithAdapter'}
rounds=${4:-3}
mkdir -p "$out"
out=$(cd "$out" && pwd)
base=$(cd "$base" && pwd)
cd "$(dirname "$0")/.."

source scripts/deb-prefix.sh
export WICK_BENCH_MODELS=${WICK_BENCH_MODELS:-/tmp/wick-bench-models}

build() {  # SRC DIR LOG
  cmake -S "$1" -B "$2" -G Ninja -DCMAKE_BUILD_TYPE=Release -DWICK_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DWICK_TESTS=OFF >"$3" 2>&1 && cmake --build "$2" -j"$(nproc)" --target wick-bench >>"$3" 2>&1
}
# Both at once: each build's longest file (the fused GEMV's many instantiations) is the long pole.
build "$base" "$base/build-gpu" "$out/build_base.log" &
base_build=$!
build . build-gpu "$out/build_new.log" || { echo "build FAILED"; tail -20 "$out/build_new.log"; exit 1; }
wait $base_build || { echo "base build FAILED"; tail -20 "$out/build_base.log"; exit 1; }

for ((r = 1; r <= rounds; ++r)); do
  for b in base new; do
    bin=build-gpu/bench/wick-bench
    [ $b = base ] && bin=$base/build-gpu/bench/wick-bench
    "$bin" --benchmark_filter="$filter" --benchmark_out="$out/r${r}_$b.json" --benchmark_out_format=json \
      >"$out/r${r}_$b.log" 2>&1 || echo "round $r $b: exit $?"
  done
done

# One line per benchmark and figure: base and new of every round.
python3 - "$out" "$rounds" <<'EOF'
import json, sys
out, rounds = sys.argv[1], int(sys.argv[2])
keys = ["tok_per_s", "base_tok_per_s", "adapter_tok_per_s", "adapter_overhead_pct", "swap_us_per_step",
        "graphs_recorded_while_timed"]
rows = {}
for r in range(1, rounds + 1):
    for b in ("base", "new"):
        try:
            data = json.load(open(f"{out}/r{r}_{b}.json"))
        except (OSError, ValueError):
            continue
        for bm in data["benchmarks"]:
            for k in keys:
                if k in bm:
                    rows.setdefault((bm["name"], k), {"base": [], "new": []})[b].append(bm[k])
print(f"{'benchmark':58} {'figure':28} base | new (each round)")
for (name, k), v in rows.items():
    fmt = lambda xs: " ".join(f"{x:,.1f}" for x in xs)
    print(f"{name:58} {k:28} {fmt(v['base'])} | {fmt(v['new'])}")
EOF
