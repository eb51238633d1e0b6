#!/usr/bin/env bash
# Line coverage of src/ by the test suite (gcovr). Usage: scripts/coverage.sh [build-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
build=${1:-build-coverage}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DWICK_COVERAGE=ON -DWICK_BENCH=OFF -DWICK_CUDA=OFF
cmake --build "$build" -j"$(nproc)"
find "$build" -name '*.gcda' -delete
ctest --test-dir "$build" -j"$(nproc)" --output-on-failure || echo "coverage: some tests failed (coverage below is still of what ran)"
gcovr --root . --filter 'src/' --object-directory "$build" --print-summary --txt "$build/coverage.txt" >/dev/null
cat "$build/coverage.txt" | tail -n 40
