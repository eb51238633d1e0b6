#!/usr/bin/env bash
# On a GPU machine: `wick serve` measured with ../shared/tools/serve_load.py (copied to scripts/serve_load.py by the
# caller, or found beside the repository) on a random model of the Qwen2.5-0.5B shape with the real Qwen tokenizer
# (scripts/fetch_tokenizer.sh; carry tests/fixtures/tokenizer/qwen), streaming /v1/completions, 100-word prompts,
# 128 new tokens, greedy, ignore_eos, at 1 / 8 / 32 / 64 streams; then BM_EngineClosedLoop (the same load on the
# engine without HTTP) in the same session, and SIGTERM's exit status. Logs and summary.txt go into the folder.
# usage: scripts/gpu-serve-check.sh RESULTS_DIR
set -uo pipefail
out=${1:?usage: scripts/gpu-serve-check.sh RESULTS_DIR}
deadline=$(( $(date +%s) + ${SECONDS_LEFT:-580} ))
left() { echo $(( deadline - $(date +%s) > 1 ? deadline - $(date +%s) : 1 )); }
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.."
summary=$out/summary.txt
: >"$summary"
note() { echo "$*" | tee -a "$summary"; }
source scripts/deb-prefix.sh
load=${SERVE_LOAD:-scripts/serve_load.py}
[ -f "$load" ] || load=../shared/tools/serve_load.py
# serve_load.py needs aiohttp; without it, Debian's pure-Python packages from .deb/py/ (apt-get download python3-aiohttp
# python3-multidict python3-yarl python3-frozenlist python3-aiosignal python3-async-timeout python3-attr
# python3-charset-normalizer python3-idna), their C extensions switched off (another Python's ABI).
if ! python3 -c "import aiohttp" 2>/dev/null && compgen -G ".deb/py/*.deb" >/dev/null; then
  for f in .deb/py/*.deb; do dpkg -x "$f" .prefix-py; done
  export PYTHONPATH=$PWD/.prefix-py/usr/lib/python3/dist-packages AIOHTTP_NO_EXTENSIONS=1 MULTIDICT_NO_EXTENSIONS=1 \
    YARL_NO_EXTENSIONS=1 FROZENLIST_NO_EXTENSIONS=1
fi
python3 -c "import aiohttp" 2>/dev/null || note "python3 has no aiohttp: serve_load.py cannot run"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$summary"
build=build-gpu-serve  # its own: configured without tests
t0=$(date +%s)
cmake -S . -B $build -G Ninja -DCMAKE_BUILD_TYPE=Release -DWICK_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DWICK_HUB=OFF \
  -DWICK_SERVE=ON -DWICK_TESTS=OFF >"$out/configure.log" 2>&1 || { note "configure FAILED"; tail -20 "$out/configure.log"; exit 1; }
if ! timeout "$(left)" cmake --build $build -j"$(nproc)" --target wick_cli wick-bench >"$out/build.log" 2>&1; then
  note "build FAILED"; grep -E "error|FAILED" "$out/build.log" | head -30; exit 1
fi
note "build: $(( $(date +%s) - t0 )) s"

model=/tmp/wick-serve-q05
if [ ! -f $model/model.safetensors ]; then
  $build/wick random-model --like qwen2.5-0.5b --dtype bf16 --out $model >"$out/model.log" 2>&1 || { note "random-model FAILED"; exit 1; }
  cp tests/fixtures/tokenizer/qwen/tokenizer.json tests/fixtures/tokenizer/qwen/tokenizer_config.json $model/
fi
port=8091
$build/wick serve --model $model --device cuda --port $port --served-model-name q05 >"$out/serve.out" 2>"$out/serve.err" &
pid=$!
for _ in $(seq 1 120); do grep -q listening "$out/serve.out" 2>/dev/null && break; sleep 0.5; done
note "$(head -1 "$out/serve.out")"
for cn in "1 8" "8 32" "32 128" "64 256"; do
  set -- $cn
  timeout "$(( $(left) < 120 ? $(left) : 120 ))" python3 "$load" $port q05 "$2" "$1" 100 128 wick >>"$out/load.jsonl" 2>"$out/load_$1.err" \
    || note "serve_load at $1 streams: exit $? ($(tail -2 "$out/load_$1.err" | tr '\n' ' '))"
done
cat "$out/load.jsonl" | tee -a "$summary"

# A fine-tuning job (256 chat examples, 3 epochs, batch 4: 192 steps) sharing the GPU with 32 streams: the streams'
# throughput while it trains, the job's time, and the trained model's answer.
python3 - "$out/train.jsonl" <<'PY'
import json, sys
with open(sys.argv[1], "w") as f:
    for i in range(256):
        f.write(json.dumps({"messages": [{"role": "user", "content": f"What is the secret word? ({i % 16})"},
                                         {"role": "assistant", "content": "The secret word is marmalade."}]}) + "\n")
PY
api=http://127.0.0.1:$port/v1
file=$(curl -s $api/files -F purpose=fine-tune -F file=@"$out/train.jsonl" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
job=$(curl -s $api/fine_tuning/jobs -H 'Content-Type: application/json' -d "{\"model\": \"q05\", \"training_file\": \"$file\",
  \"suffix\": \"gpu\", \"hyperparameters\": {\"n_epochs\": 3, \"learning_rate_multiplier\": 25}}" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
t0=$(date +%s.%N)
for _ in $(seq 1 200); do curl -s $api/fine_tuning/jobs/$job/events | grep -q train_loss && break; sleep 0.1; done
timeout 120 python3 "$load" $port q05 1024 32 100 128 wick-while-training >>"$out/load_training.jsonl" 2>"$out/load_training.err"
steps_then=$(curl -s $api/fine_tuning/jobs/$job/events | python3 -c 'import json,sys; print(sum(e["type"]=="metrics" for e in json.load(sys.stdin)["data"]))')
for _ in $(seq 1 600); do
  status=$(curl -s $api/fine_tuning/jobs/$job | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
  case $status in succeeded|failed|cancelled) break;; esac; sleep 0.2
done
t1=$(date +%s.%N)
note "fine-tuning job: $status in $(python3 -c "print(round($t1 - $t0, 1))") s; $steps_then steps done when the load below ended"
cat "$out/load_training.jsonl" | tee -a "$summary"
curl -s $api/fine_tuning/jobs/$job | tee "$out/job.json" | head -c 600 >>"$summary"; echo >>"$summary"
model=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["fine_tuned_model"])' "$out/job.json")
curl -s $api/chat/completions -H 'Content-Type: application/json' -d "{\"model\": \"$model\", \"temperature\": 0,
  \"max_tokens\": 12, \"messages\": [{\"role\": \"user\", \"content\": \"What is the secret word? (3)\"}]}" | tee -a "$summary"
echo >>"$summary"
curl -s localhost:$port/metrics >"$out/metrics.txt"
kill -TERM $pid
timeout 40 tail --pid=$pid -f /dev/null
wait $pid
note "SIGTERM: exit $?"

[ -n "${SKIP_BENCH:-}" ] && exit 0
export WICK_BENCH_MODELS=${WICK_BENCH_MODELS:-/tmp/wick-bench-models}
timeout "$(left)" $build/bench/wick-bench --benchmark_filter='BM_EngineClosedLoop/cuda' --benchmark_out="$out/bench.json" \
  --benchmark_out_format=json >"$out/bench.log" 2>&1
note "bench: exit $?"
grep -E "^BM_|rror" "$out/bench.log" | tee -a "$summary"
