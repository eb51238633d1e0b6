#include "bench_util.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <vector>

#ifdef WICK_WITH_CUDA
#include <cuda_runtime.h>
#endif

#include "core/thread_pool.h"
#include "wick/config.h"
#include "wick/error.h"
#include "wick/random_model.h"

namespace wick::bench {

std::shared_ptr<Model> load_or_skip(benchmark::State& state, const std::string& like, const LoadOptions& options) {
  try {
    return Model::load(bench_model(like), options);
  } catch (const Error& e) {
    state.SkipWithError(e.what());
    return nullptr;
  }
}

std::filesystem::path bench_model(const std::string& like) {
  const char* root = std::getenv("WICK_BENCH_MODELS");
  const std::filesystem::path dir = std::filesystem::path(root ? root : "bench-models") / (like + "-bf16");
  if (!std::filesystem::exists(dir / "model.safetensors")) {
    if (is_random_embedder_shape(like)) write_random_embedder(like, dir, {.dtype = DType::bf16, .seed = 1});
    else write_random_model(ModelConfig::preset(like), dir, {.dtype = DType::bf16, .seed = 1});
  }
  return dir;
}

namespace {
double best_seconds(int reps, auto&& fn) {
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}
}  // namespace

const Bandwidth& memory_bandwidth() {
  static const Bandwidth bw = [] {
    const size_t n = size_t(1) << 27;  // 128 Mi floats = 512 MiB per buffer
    std::vector<float> a(n), b(n);
    const int64_t grain = int64_t(n) / thread_count() + 1;
    parallel_for(int64_t(n), grain, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) a[size_t(i)] = float(i & 1023), b[size_t(i)] = 0.0f;
    });
    std::atomic<float> sink{0};
    const double read_s = best_seconds(5, [&] {
      parallel_for(int64_t(n), grain, [&](int64_t i0, int64_t i1) {
        // 16 independent sums so the loop streams memory instead of waiting on add latency.
        float acc[16] = {};
        int64_t i = i0;
        for (; i + 16 <= i1; i += 16)
          for (int k = 0; k < 16; ++k) acc[k] += a[size_t(i + k)];
        for (; i < i1; ++i) acc[0] += a[size_t(i)];
        float total = 0;
        for (float v : acc) total += v;
        sink.store(sink.load() + total);
      });
    });
    const double copy_s = best_seconds(5, [&] {
      parallel_for(int64_t(n), grain, [&](int64_t i0, int64_t i1) {
        std::memcpy(b.data() + i0, a.data() + i0, size_t(i1 - i0) * sizeof(float));
      });
    });
    const double bytes = double(n) * sizeof(float);
    return Bandwidth{bytes / read_s / 1e9, 2 * bytes / copy_s / 1e9};
  }();
  return bw;
}

double device_copy_bandwidth_gbps() {
#ifdef WICK_WITH_CUDA
  static const double gbps = [] {
    const size_t bytes = size_t(2) << 30;  // 2 GiB each way: far past the 60 MB L2
    void *a = nullptr, *b = nullptr;
    if (cudaMalloc(&a, bytes) != cudaSuccess || cudaMalloc(&b, bytes) != cudaSuccess) {
      cudaGetLastError();
      cudaFree(a);
      return 0.0;
    }
    cudaMemset(a, 1, bytes);
    cudaEvent_t start, stop;
    cudaEventCreate(&start);
    cudaEventCreate(&stop);
    float best_ms = 1e30f;
    for (int r = 0; r < 6; ++r) {
      cudaEventRecord(start);
      cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice);
      cudaEventRecord(stop);
      cudaEventSynchronize(stop);
      float ms = 0;
      cudaEventElapsedTime(&ms, start, stop);
      if (r > 0) best_ms = std::min(best_ms, ms);  // the first copy warms up
    }
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    cudaFree(a);
    cudaFree(b);
    return 2.0 * double(bytes) / (double(best_ms) / 1e3) / 1e9;
  }();
  return gbps;
#else
  return 0.0;
#endif
}

}  // namespace wick::bench
