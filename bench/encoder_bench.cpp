// encoder_attention on the GPU alone (TFLOP/s of its two matrix products), at the shapes of issue 24's anchors:
// MiniLM-L6 (12 heads of 32) and BERT-base (12 heads of 64), 128 and 512 tokens a sequence. The whole encoder is
// BM_Embed's (embed_bench.cpp).
#include <benchmark/benchmark.h>

#include <cmath>
#include <memory>
#include <random>
#include <vector>

#include "backend/backend.h"
#include "wick/error.h"

namespace wick::bench {
namespace {

std::unique_ptr<Backend> gpu_or_skip(benchmark::State& state) {
  try {
    return make_backend(Device::cuda);
  } catch (const Error& e) {
    state.SkipWithError(e.what());
    return nullptr;
  }
}

Tensor random_on(Backend& b, const Shape& shape, float scale, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  Tensor host = Tensor::empty(shape, DType::f32);
  for (int64_t i = 0; i < host.numel(); ++i) host.data<float>()[i] = dist(rng);
  return b.upload(host, b.compute_dtype());
}

// starts of `batch` sequences of `len` tokens each, on the device.
EncoderSpans equal_spans(Backend& b, int64_t batch, int64_t len) {
  std::vector<int32_t> starts;
  for (int64_t s = 0; s <= batch; ++s) starts.push_back(int32_t(s * len));
  return {.starts = b.upload(Tensor::from_ints(starts, {batch + 1}), DType::i32), .max_len = len};
}

// Waits for the queued work: download() synchronises the backend's stream.
void finish(Backend& b, const Tensor& t) { benchmark::DoNotOptimize(b.download(t.rows(0, 1))); }

// Args: heads, head_dim, tokens per sequence, sequences.
void BM_CudaEncoderAttention(benchmark::State& state) {
  auto gpu = gpu_or_skip(state);
  if (!gpu) return;
  const int64_t heads = state.range(0), d = state.range(1), len = state.range(2), batch = state.range(3);
  const int64_t rows = len * batch;
  const Tensor q = random_on(*gpu, {rows, heads, d}, 1.0f, 1), k = random_on(*gpu, {rows, heads, d}, 1.0f, 2),
               v = random_on(*gpu, {rows, heads, d}, 1.0f, 3);
  Tensor out = gpu->alloc({rows, heads * d}, DType::bf16);
  const EncoderSpans spans = equal_spans(*gpu, batch, len);
  const AttentionParams p{.num_heads = heads, .num_kv_heads = heads, .head_dim = d,
                          .scale = float(1.0 / std::sqrt(double(d)))};
  gpu->encoder_attention(q, k, v, spans, {}, out, p);
  finish(*gpu, out);
  for (auto _ : state) {
    gpu->encoder_attention(q, k, v, spans, {}, out, p);
    finish(*gpu, out);
  }
  const double flops = 4.0 * double(batch) * double(len) * double(len) * double(heads) * double(d);
  state.counters["TFLOPs"] =
      benchmark::Counter(flops * 1e-12 * double(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_CudaEncoderAttention)
    ->Args({12, 32, 128, 128})
    ->Args({12, 32, 512, 32})
    ->Args({12, 64, 128, 128})
    ->Args({12, 64, 512, 32})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

}  // namespace
}  // namespace wick::bench
