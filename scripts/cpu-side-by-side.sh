#!/usr/bin/env bash
# CPU side by side: wick's CPU backend (bf16 weights, and 8-bit with --weights int8) against llama.cpp (bf16 and Q8_0)
# on the same weights (the Qwen2.5-0.5B-shaped random bench model), in alternating rounds so that both see the same
# machine and load. Per round and engine: 512-token
# prefill tok/s, 32-token decode tok/s and the peak RSS of a 32-token generation; then the median of the rounds,
# the CPU model, nproc and the load average before and after (issue 23).
# usage: scripts/cpu-side-by-side.sh [OUT_DIR]        (logs and raw JSON; default: a new folder under /tmp)
# environment (defaults in brackets):
#   WICK_BUILD         wick build folder with bench/wick-bench and wick [build]
#   WICK_BENCH_MODELS  folder holding qwen2.5-0.5b-bf16/ (HF format) [bench-models]
#   LLAMA_BUILD        llama.cpp build folder with bin/llama-bench and bin/llama-cli [/work/llama/build]
#   GGUF_BF16          that model converted to GGUF bf16 [/work/llama/gguf/qwen2.5-0.5b-bf16.gguf]
#   GGUF_Q8            the same quantized to Q8_0, skipped if absent [/work/llama/gguf/qwen2.5-0.5b-q8_0.gguf]
#   ROUNDS             alternations [3]
#   THREADS            threads for both engines (WICK_NUM_THREADS, llama.cpp -t) [nproc]
#   LLAMA_CTX          llama-cli context for the RSS run: enough for prompt + 32 tokens, as wick sizes its
#                      KV cache to the request; llama-cli's default (4096) would add ~50 MB of zeroed KV [128]
# The GGUFs come from /work/shared/tools/hf_to_gguf.py and llama-quantize (see the issue 23 notes).
# Both engines mmap their weights, so peak RSS counts the weight pages touched for both alike.
# wick-bench's "***WARNING*** Library was built as DEBUG" is about Debian's libbenchmark, not wick's build.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-$(mktemp -d /tmp/cpu-side-by-side.XXXXXX)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
trap 'echo "FAILED at line $LINENO; logs: $out" >&2' ERR
wick_build=${WICK_BUILD:-build}
export WICK_BENCH_MODELS=${WICK_BENCH_MODELS:-$PWD/bench-models}
wick_model=$WICK_BENCH_MODELS/qwen2.5-0.5b-bf16
llama_build=${LLAMA_BUILD:-/work/llama/build}
gguf_bf16=${GGUF_BF16:-/work/llama/gguf/qwen2.5-0.5b-bf16.gguf}
gguf_q8=${GGUF_Q8:-/work/llama/gguf/qwen2.5-0.5b-q8_0.gguf}
rounds=${ROUNDS:-3}
threads=${THREADS:-$(nproc)}
llama_ctx=${LLAMA_CTX:-128}
export WICK_NUM_THREADS=$threads

for f in "$wick_build/bench/wick-bench" "$wick_build/wick" "$llama_build/bin/llama-bench" \
         "$llama_build/bin/llama-cli" "$wick_model/model.safetensors" "$gguf_bf16"; do
  [ -s "$f" ] || { echo "missing: $f" >&2; exit 1; }
done
ggufs=(bf16 "$gguf_bf16")
if [ -s "$gguf_q8" ]; then ggufs+=(q8_0 "$gguf_q8"); else echo "no Q8_0 GGUF at $gguf_q8: skipped" >&2; fi

# The same prompt for both RSS runs: "Hello, world!" in the Qwen2 vocabulary is 9707,11,1879,0.
prompt_ids=9707,11,1879,0
prompt_text='Hello, world!'

results=$out/results.tsv  # round engine weights prefill_tok_s decode_tok_s peak_rss_mb
: >"$results"

# Peak RSS (MB) of a command, from getrusage via GNU time (Debian package `time`), else via python3.
peak_rss_mb() {  # LOG CMD...
  local log=$1; shift
  if [ -x /usr/bin/time ]; then
    /usr/bin/time -f '%M' -o "$log.rss" "$@" >"$log" 2>&1 </dev/null
  else
    python3 -c 'import resource, subprocess, sys
subprocess.run(sys.argv[2:], check=True, stdin=subprocess.DEVNULL)
open(sys.argv[1], "w").write("%d\n" % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)' \
      "$log.rss" "$@" >"$log" 2>&1
  fi
  awk 'END { printf "%.0f", $1 / 1024 }' "$log.rss"
}

# wick: wick-bench's CPU prefill (512 tokens) and decode (32 tokens after a 16-token prompt), then `wick generate`,
# with the file's bf16 weights or 8-bit ones (--weights int8, quantised at load), on the kernels' default path (the
# best the CPU has: with AVX512_BF16, activations rounded to bf16 where they meet bf16 weights, for vdpbf16ps, as
# llama.cpp's bf16 path does) and, where that rounds, with WICK_CPU_ISA=avx512 too (bf16 weights only: the f32
# products of the reference).
run_wick() {  # ROUND WEIGHTS (bf16 or int8) ISA (default or a WICK_CPU_ISA value)
  local r=$1 w=$2 isa=$3 tag=$2_$3
  local json=$out/r${r}_wick_${tag}_bench.json bench=cpu_qwen2_5_0_5b
  local -a env=() flags=()
  [ "$isa" = default ] || env=(WICK_CPU_ISA="$isa")
  [ "$w" = bf16 ] || { bench+=_$w; flags=(--weights "$w"); }
  env "${env[@]}" "$wick_build/bench/wick-bench" --benchmark_filter="BM_(Prefill|Decode)/$bench/" \
    --benchmark_out="$json" --benchmark_out_format=json >"$out/r${r}_wick_${tag}_bench.log" 2>&1
  local rates rss
  rates=$(python3 - "$json" "$bench" <<'EOF'
import json, sys
bms, bench = json.load(open(sys.argv[1]))["benchmarks"], sys.argv[2]
rate = lambda prefix: next((b["tok_per_s"] for b in bms if b["name"].startswith(prefix) and "tok_per_s" in b), float("nan"))
print(f'{rate(f"BM_Prefill/{bench}/512"):.2f}\t{rate(f"BM_Decode/{bench}/32"):.2f}')
EOF
)
  rss=$(peak_rss_mb "$out/r${r}_wick_${tag}_generate.log" env "${env[@]}" "$wick_build/wick" generate \
        --model "$wick_model" --tokens "$prompt_ids" --greedy --ignore-eos --max-tokens 32 "${flags[@]}")
  local label=$w
  [ "$isa" = default ] || label="$w ($isa)"
  printf '%s\twick\t%s\t%s\t%s\n' "$r" "$label" "$rates" "$rss" >>"$results"
}

# llama.cpp: llama-bench pp512 and tg32 (3 repetitions each, its own warm-up first), then llama-cli for 32 tokens.
run_llama() {  # ROUND WEIGHTS GGUF
  local r=$1 w=$2 gguf=$3 json=$out/r$1_llama_$2_bench.json
  "$llama_build/bin/llama-bench" -m "$gguf" -p 512 -n 32 -r 3 -t "$threads" -o json >"$json" \
    2>"$out/r${r}_llama_${w}_bench.log"
  local rates rss
  rates=$(python3 - "$json" <<'EOF'
import json, sys
tests = json.load(open(sys.argv[1]))
rate = lambda p, g: next((t["avg_ts"] for t in tests if t["n_prompt"] == p and t["n_gen"] == g), float("nan"))
print(f"{rate(512, 0):.2f}\t{rate(0, 32):.2f}")
EOF
)
  rss=$(peak_rss_mb "$out/r${r}_llama_${w}_cli.log" "$llama_build/bin/llama-cli" -m "$gguf" -p "$prompt_text" \
        -n 32 -no-cnv --ignore-eos -t "$threads" -c "$llama_ctx")
  printf '%s\tllama.cpp\t%s\t%s\t%s\n' "$r" "$w" "$rates" "$rss" >>"$results"
}

# In a VM lscpu's model name can be generic ("AMD EPYC"); family/model/stepping say which core (26/2: Zen 5).
cpu="$(lscpu | sed -n 's/^Model name: *//p') (family $(lscpu | sed -n 's/^CPU family: *//p'), model \
$(lscpu | sed -n 's/^Model: *//p'), stepping $(lscpu | sed -n 's/^Stepping: *//p'))"
wick_runs=(bf16 default int8 default)  # WEIGHTS ISA pairs
if grep -qw avx512_bf16 /proc/cpuinfo; then cpu+=", AVX512_BF16"; wick_runs+=(bf16 avx512); fi
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for ((r = 1; r <= rounds; ++r)); do
  echo "round $r/$rounds" >&2
  for ((i = 0; i < ${#wick_runs[@]}; i += 2)); do run_wick "$r" "${wick_runs[i]}" "${wick_runs[i + 1]}"; done
  for ((i = 0; i < ${#ggufs[@]}; i += 2)); do run_llama "$r" "${ggufs[i]}" "${ggufs[i + 1]}"; done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

{
  echo "CPU: $cpu; nproc $(nproc); threads $threads; load average (1/5/15 min) before: $load_before, after: $load_after"
  echo "wick $(git rev-parse --short HEAD 2>/dev/null || echo '?') ($wick_build); llama.cpp $llama_build"
  echo "prefill: 512-token prompt; decode: 32 tokens (wick after a 16-token prompt, llama-bench tg32 from empty);"
  echo "peak RSS: a 32-token greedy generation from a 4-token prompt (llama-cli -c $llama_ctx)"
  python3 - "$results" <<'EOF'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
print(f"{'round':>6}  {'engine':10} {'weights':18} {'prefill tok/s':>14} {'decode tok/s':>13} {'peak RSS MB':>12}")
for r, e, w, p, d, m in rows:
    print(f"{r:>6}  {e:10} {w:18} {float(p):14.1f} {float(d):13.2f} {float(m):12.0f}")
for key in dict.fromkeys((e, w) for _, e, w, *_ in rows):
    sel = [x for x in rows if (x[1], x[2]) == key]
    med = [statistics.median(float(x[i]) for x in sel) for i in (3, 4, 5)]
    print(f"{'median':>6}  {key[0]:10} {key[1]:18} {med[0]:14.1f} {med[1]:13.2f} {med[2]:12.0f}")
EOF
} | tee "$out/summary.txt"
echo "logs: $out" >&2
