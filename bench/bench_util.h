// Shared pieces of wick-bench: benchmark models made on first use, and the machine's memory bandwidth.
#pragma once

#include <benchmark/benchmark.h>

#include <filesystem>
#include <memory>
#include <string>

#include "wick/model.h"

namespace wick::bench {

/// Directory of a random model shaped like `like` (qwen2.5-0.5b, tiny, ...; minilm-l6 or bert-base: a
/// sentence-transformers encoder folder) with bf16 files,
/// written on first use under $WICK_BENCH_MODELS (default: ./bench-models).
std::filesystem::path bench_model(const std::string& like);

/// bench_model(like) loaded with `options`, or nullptr after marking the benchmark skipped with the reason (no GPU
/// here, or fewer GPUs than the split needs).
std::shared_ptr<Model> load_or_skip(benchmark::State& state, const std::string& like, const LoadOptions& options);

struct Bandwidth {
  double read_gbps;  // GB/s streaming reads (sum of a large buffer), all cores
  double copy_gbps;  // GB/s for memcpy, counting bytes read + bytes written
};
/// Measured once per process on a buffer far larger than the caches.
const Bandwidth& memory_bandwidth();

/// GPU device-to-device copy bandwidth in GB/s (bytes read + written), measured once; 0 without CUDA.
double device_copy_bandwidth_gbps();

}  // namespace wick::bench
