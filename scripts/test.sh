#!/usr/bin/env bash
# Builds wick and runs the whole test suite (ctest). Usage: scripts/test.sh [build-dir] [extra cmake args...]
# CTEST_ARGS (environment): more ctest arguments, e.g. -E REGEX to leave tests out.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/fetch_tokenizer.sh
# The official openai npm client, which tests/serve/cli_serve_test.cpp drives wick serve with (pinned by its lock file).
(cd tests/serve/openai_client && npm ci --no-audit --no-fund --silent)
build=${1:-build}
shift || true
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-Release} "$@"
cmake --build "$build" -j"$(nproc)"
# shellcheck disable=SC2086  # CTEST_ARGS is a list of arguments
ctest --test-dir "$build" --output-on-failure -j"$(nproc)" ${CTEST_ARGS:-}
