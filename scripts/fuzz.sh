#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ with clang (ASan + UBSan, in build-fuzz/) and runs each in turn for SECONDS
# (default 30) on a copy of its corpus, so the committed corpora do not grow. Fails on the first crash, leak,
# timeout, out-of-memory or sanitizer report, printing the reproducer. See docs/FUZZING.md.
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
      -DWICK_CUDA=OFF -DWICK_BENCH=OFF -DWICK_TESTS=OFF >/dev/null
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
for t in "${targets[@]}"; do
  read -r name max_len dict <<<"$t"
  exe="$build/fuzz/${name}_fuzz"
  [ -x "$exe" ] || { echo "fuzz: $exe was not built (the hub target needs libcurl and OpenSSL, openai_request cpp-httplib)" >&2; exit 1; }
  rm -rf "${run:?}/$name"
  mkdir -p "$run/$name/artifacts"
  cp -r "fuzz/corpus/$name" "$run/$name/corpus"
  log="$run/$name/fuzz.log"
  echo "fuzz: $name for ${seconds}s (log: $log)"
  if ! "$exe" -max_total_time="$seconds" -max_len="$max_len" -rss_limit_mb=2048 -timeout=10 -dict="$dict" \
       -artifact_prefix="$run/$name/artifacts/" -print_final_stats=1 "$run/$name/corpus" >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "fuzz: $name FAILED; reproducer: $(ls -d "$run/$name"/artifacts/* 2>/dev/null | tr '\n' ' ')" >&2
    echo "fuzz: replay it with $exe REPRODUCER" >&2
    exit 1
  fi
  # The last status line: executions, coverage (cov: edges, ft: features), corpus size.
  grep -E '^#[0-9]+' "$log" | tail -n 1 | sed "s/^/fuzz: $name: /"
  grep -E '^stat::(number_of_executed_units|average_exec_per_sec)' "$log" | sed "s/^/fuzz: $name: /"
done
echo "fuzz: all targets ran ${seconds}s each without a finding"
