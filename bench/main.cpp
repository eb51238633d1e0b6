// wick-bench: one Google Benchmark executable for every speed figure in docs/BENCHMARKS.md.
#include <benchmark/benchmark.h>

BENCHMARK_MAIN();
