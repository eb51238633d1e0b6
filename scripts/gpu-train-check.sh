#!/usr/bin/env bash
# On the GPU machine: training's checks against PyTorch, in one run (scripts/gpu-check.sh then runs the whole suite,
# memcheck and the benchmarks).
#   1. The transformers + PEFT reference (scripts/make_train_reference.py) into RESULTS/peft (also RESULTS/peft.tar)
#      and into tests/fixtures/train/peft, so the PeftTraining tests run against it here.
#   2. A CUDA build of the CLI and the backend and train tests; the CUDA backward ops against their CPU twins, the
#      CUDA trainer against the CPU's, the PeftTraining tests; compute-sanitizer memcheck of the CUDA ones.
#   3. wick-trained adapters in PEFT: `wick train` (CPU and CUDA) on the reference's causal-untied model, the adapter
#      loaded by PEFT (scripts/check_peft_load.py) and by `wick logits`; how far apart their logits are. The CPU
#      adapter and PEFT's logits of it go to RESULTS/peft/wick_trained/ (the fixture the CPU test reads).
# RESULTS_DIR gets three files (the device tool brings back at most eight): summary.txt, peft.tar (the reference and
# wick_trained/, to unpack into tests/fixtures/train) and logs.tar (every log and output).
# usage: scripts/gpu-train-check.sh RESULTS_DIR
set -uo pipefail
results=${1:?usage: scripts/gpu-train-check.sh RESULTS_DIR}
mkdir -p "$results"
results=$(cd "$results" && pwd)
out=$(mktemp -d)
cd "$(dirname "$0")/.."
summary=$results/summary.txt
: >"$summary"
note() { echo "$*" | tee -a "$summary"; }
source scripts/deb-prefix.sh

t0=$(date +%s)
timeout 300 python3 scripts/make_train_reference.py --out "$out/peft" >"$out/reference.log" 2>&1
note "make_train_reference: exit $? in $(( $(date +%s) - t0 )) s"
tail -5 "$out/reference.log" >>"$summary"
mkdir -p tests/fixtures/train/peft && cp -r "$out/peft/." tests/fixtures/train/peft/

build=build-gpu
t0=$(date +%s)
cmake -S . -B $build -G Ninja -DCMAKE_BUILD_TYPE=Release -DWICK_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
  >"$out/configure.log" 2>&1 || { note "configure FAILED"; tail -30 "$out/configure.log" | tee -a "$summary"; exit 1; }
if ! timeout 420 cmake --build $build -j"$(nproc)" --target wick_cli wick_backend_tests wick_train_tests \
     >"$out/build.log" 2>&1; then
  note "build FAILED"; grep -E "error|FAILED" "$out/build.log" | head -30 | tee -a "$summary"; exit 1
fi
note "build: $(( $(date +%s) - t0 )) s"

run_tests() {  # name binary filter
  timeout 240 "$2" --gtest_filter="$3" >"$out/$1.log" 2>&1
  note "$1: exit $? ($(grep -E '^\[  (PASSED|FAILED|SKIPPED)' "$out/$1.log" | tr '\n' ' '))"
  grep -E "^\[  FAILED  \]|Failure|Expected|Which is|actual" "$out/$1.log" | head -40 >>"$summary"
}
run_tests cuda_backward $build/tests/wick_backend_tests 'CudaBackward*:CudaOps*:CudaFused*'
run_tests trainer_cuda $build/tests/wick_train_tests 'TinyModels/TrainerCuda*'
run_tests peft_training $build/tests/wick_train_tests '*PeftTraining*'
if command -v compute-sanitizer >/dev/null; then
  timeout 300 compute-sanitizer --tool memcheck --leak-check full --error-exitcode 9 $build/tests/wick_backend_tests \
    --gtest_filter='CudaBackward*' >"$out/memcheck_backward.log" 2>&1
  note "memcheck CudaBackward: exit $? ($(grep -c 'Invalid' "$out/memcheck_backward.log") invalid; $(tail -1 "$out/memcheck_backward.log"))"
  timeout 300 compute-sanitizer --tool memcheck --leak-check full --error-exitcode 9 $build/tests/wick_train_tests \
    --gtest_filter='TinyModels/TrainerCuda.OneStepMatchesTheCpu/tiny_untied_ckpt' >"$out/memcheck_train.log" 2>&1
  note "memcheck TrainerCuda: exit $? ($(grep -c 'Invalid' "$out/memcheck_train.log") invalid; $(tail -1 "$out/memcheck_train.log"))"
fi

# A wick-trained adapter in PEFT.
wick=$build/tools/wick/wick
[ -x "$wick" ] || wick=$(find $build -name wick -type f -perm -u+x | head -1)
model=tests/fixtures/train/peft/models/causal-untied
ids="[5,17,42,99,103,250,77,12,8,301,64,102,900,33,1000,7]"
for device in cpu cuda; do
  adapter=$out/wick_trained_$device
  timeout 120 "$wick" train --model $model --data tests/fixtures/train/peft/all7_untied/data.jsonl --out "$adapter" \
    --targets all-linear --rank 8 --alpha 16 --steps 10 --batch-size 2 --lr 1e-2 --dropout 0.05 --device $device \
    >"$out/train_$device.log" 2>&1
  note "wick train ($device): exit $? $(tail -1 "$out/train_$device.log")"
  timeout 120 "$wick" logits --model $model --adapter "$adapter" --tokens "${ids//[\[\]]/}" --out "$out/wick_logits_$device.safetensors" \
    --device $device >>"$out/train_$device.log" 2>&1
  timeout 120 python3 scripts/check_peft_load.py $model "$adapter" "$ids" "$out/peft_logits_$device.safetensors" \
    >>"$out/train_$device.log" 2>&1
  note "check_peft_load ($device-trained): exit $? $(tail -1 "$out/train_$device.log")"
  python3 - "$out/wick_logits_$device.safetensors" "$out/peft_logits_$device.safetensors" <<'EOF' | tee -a "$summary"
import sys
from safetensors.torch import load_file
w = load_file(sys.argv[1])["logits"].float().reshape(-1, 1024)
p = load_file(sys.argv[2])["logits"].float().reshape(-1, 1024)
print(f"  wick logits vs PEFT's: max |d| {float((w - p).abs().max()):.3g}, max |PEFT| {float(p.abs().max()):.3g}, "
      f"relative {float((w - p).abs().max() / p.abs().max()):.3g}; argmax agree {int((w.argmax(-1) == p.argmax(-1)).sum())}/{p.shape[0]}")
EOF
done
mkdir -p "$out/peft/wick_trained"
cp "$out/wick_trained_cpu/adapter_config.json" "$out/wick_trained_cpu/adapter_model.safetensors" "$out/peft/wick_trained/"
cp "$out/peft_logits_cpu.safetensors" "$out/peft/wick_trained/peft_logits.safetensors"
echo "$ids" >"$out/peft/wick_trained/input_ids.json"
tar -C "$out" -cf "$results/peft.tar" peft
tar -C "$out" -cf "$results/logs.tar" --exclude=peft .
note "done in $SECONDS s"
