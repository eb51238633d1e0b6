#!/usr/bin/env bash
# The main job on an embedded default: build wick, make a tiny random model, generate with it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake -S . -B build -G Ninja -DWICK_TESTS=OFF -DWICK_BENCH=OFF >/dev/null
cmake --build build -j"$(nproc)" --target wick_cli
model=build/models/tiny
[ -f "$model/model.safetensors" ] || build/wick random-model --like tiny --dtype bf16 --out "$model"
build/wick generate --model "$model" --tokens 1,2,3,4 --greedy --max-tokens 16 --ignore-eos --json
