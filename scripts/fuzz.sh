#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ with clang (ASan + UBSan, in build-fuzz/) and runs each for SECONDS
# (default 30) on a copy of its corpus, so the committed corpora do not grow; FUZZ_JOBS (environment, default 1)
# targets at a time, each a single process on a core of its own. Fails on a crash, leak, timeout, out-of-memory
# or sanitizer report, printing the reproducer. See docs/FUZZING.md.
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   (targets: the fuzz/*_fuzz.cpp names; default all)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
shift || true

# Debian 12's clang is clang 14; libFuzzer's runtime for it is a separate package.
scripts/setup.sh clang libfuzzer-14-dev
runtime="$(clang++ -print-resource-dir)/lib/linux/libclang_rt.fuzzer-x86_64.a"
[ -f "$runtime" ] || { echo "fuzz: no libFuzzer runtime at $runtime (Debian: libfuzzer-<clang version>-dev)" >&2; exit 1; }

build=build-fuzz
cmake -S . -B "$build" -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O2 -gline-tables-only -DNDEBUG" -DWICK_FUZZ=ON \
      -DWICK_CUDA=OFF -DWICK_BENCH=OFF -DWICK_TESTS=OFF -DWICK_UNITY=ON >/dev/null
cmake --build "$build" -j"$(nproc)" --target wick_fuzzers

# name, -max_len (above its largest seed: a tokenizer.json fixture is 57 KB), dictionary
targets=(
  "safetensors 65536 fuzz/json.dict"
  "config 4096 fuzz/json.dict"
  "generation_config 4096 fuzz/json.dict"
  "tokenizer 65536 fuzz/json.dict"
  "chat_template 8192 fuzz/chat_template.dict"
  "adapter_config 4096 fuzz/json.dict"
  "hub_api 4096 fuzz/json.dict"
  "openai_request 8192 fuzz/json.dict"
)
selected=()
if (($#)); then
  wanted=" $* "
  for t in "${targets[@]}"; do [[ $wanted == *" ${t%% *} "* ]] && selected+=("$t"); done
  if ((${#selected[@]} != $#)); then
    echo "fuzz: unknown target in '$*' (targets: $(printf '%s\n' "${targets[@]}" | cut -d' ' -f1 | tr '\n' ' '))" >&2
    exit 2
  fi
  targets=("${selected[@]}")
fi

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
run="$build/fuzz-run"
jobs=${FUZZ_JOBS:-1}
# fuzz_one NAME MAX_LEN DICT: runs one target; what it has to say goes to $run/NAME/summary, printed in target order
# once the targets started have run (none is started after a finding); $run/NAME/passed marks a pass.
fuzz_one() {
  local name=$1 max_len=$2 dict=$3
  local exe="$build/fuzz/${name}_fuzz" log="$run/$name/fuzz.log" summary="$run/$name/summary"
  if ! "$exe" -max_total_time="$seconds" -max_len="$max_len" -rss_limit_mb=2048 -timeout=10 -dict="$dict" \
       -artifact_prefix="$run/$name/artifacts/" -print_final_stats=1 "$run/$name/corpus" >"$log" 2>&1; then
    {
      tail -n 60 "$log"
      echo "fuzz: $name FAILED; reproducer: $(ls -d "$run/$name"/artifacts/* 2>/dev/null | tr '\n' ' ')"
      echo "fuzz: replay it with $exe REPRODUCER"
    } >"$summary"
    return 1
  fi
  touch "$run/$name/passed"
  # The last status line: executions, coverage (cov: edges, ft: features), corpus size.
  {
    grep -E '^#[0-9]+' "$log" | tail -n 1 | sed "s/^/fuzz: $name: /"
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec)' "$log" | sed "s/^/fuzz: $name: /"
  } >"$summary"
}
names=()  # the targets started
failed=0
for t in "${targets[@]}"; do
  read -r name max_len dict <<<"$t"
  while ((failed == 0 && $(jobs -rp | wc -l) >= jobs)); do wait -n || failed=1; done
  ((failed == 0)) || break
  exe="$build/fuzz/${name}_fuzz"
  [ -x "$exe" ] || { echo "fuzz: $exe was not built (the hub target needs libcurl and OpenSSL, openai_request cpp-httplib)" >&2; exit 1; }
  rm -rf "${run:?}/$name"
  mkdir -p "$run/$name/artifacts"
  cp -r "fuzz/corpus/$name" "$run/$name/corpus"
  echo "fuzz: $name for ${seconds}s (log: $run/$name/fuzz.log)"
  names+=("$name")
  fuzz_one "$name" "$max_len" "$dict" &
done
wait
for name in "${names[@]}"; do
  if [ -e "$run/$name/passed" ]; then
    cat "$run/$name/summary"
  else
    cat "$run/$name/summary" >&2 2>/dev/null || echo "fuzz: $name did not finish (log: $run/$name/fuzz.log)" >&2
    failed=1
  fi
done
((failed == 0)) || exit 1
echo "fuzz: all targets ran ${seconds}s each without a finding"
