#!/usr/bin/env bash
# wick on the CPU, end to end: build it, stream text from the project's demo model, train a LoRA adapter on a small
# style set, and hot-swap that adapter and a second one over one prompt in one process.
# models/wick-demo is a 6.8M-parameter Qwen2 trained from scratch on the King James Bible, the fortune cookie files
# and the Jargon File (models/wick-demo/README.md; scripts/make_demo_model.py made it).
set -euo pipefail
cd "$(dirname "$0")/.."
step() {
  if [ -t 1 ]; then printf '\n\033[1m%s\033[0m\n' "$*"; else printf '\n%s\n' "$*"; fi
}
scripts/setup.sh
step "Building wick: the CLI and the adapter hot-swap example (Release, CPU backend)"
cmake -S . -B build -G Ninja -DWICK_TESTS=OFF -DWICK_BENCH=OFF >/dev/null
cmake --build build -j"$(nproc)" --target wick_cli adapter_swap_demo
model=models/wick-demo
out=build/demo
rm -rf "$out"
t0=$SECONDS

step "1/3 Streaming 80 tokens from $model, token by token as they are sampled (its generation_config.json)"
build/wick generate --model "$model" --prompt "And it came to pass, when the hacker" --max-tokens 80 --seed 1 --stream
echo

step "2/3 Training a LoRA adapter (rank 16, all seven projections) on 300 Jargon File entries, on the CPU"
build/wick train --model "$model" --data models/styles/hacker.jsonl --out "$out/hacker" --targets all-linear \
  --rank 16 --alpha 32 --lr 5e-3 --steps 60 --batch-size 8 --seq-len 128 --schedule cosine --warmup 5
echo "(the loss of every step is in $out/hacker/train_log.csv, drawn in $out/hacker/loss.svg)"

step "3/3 One prompt, three styles: the base model, the adapter just trained, and models/adapters/scripture (trained with PEFT on the Psalms and Proverbs), swapped in one process"
build/adapter_swap_demo "$model" "$out/hacker" models/adapters/scripture "My computer"

step "Done in $((SECONDS - t0)) s after the build. Next: build/wick chat --model $model, or build/wick --help"
