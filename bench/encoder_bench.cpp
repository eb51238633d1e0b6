// The encoder ops on the GPU: encoder_attention alone (TFLOP/s of its two matrix products), and the layers of a
// BERT-shaped encoder built from the backend's ops (QKV, attention, output projection, residual LayerNorm, GELU MLP,
// residual LayerNorm) on random weights, as sentences/s for batches of equal-length sequences: the shapes,
// MiniLM-L6 (hidden 384, 12 heads of 32, 6 layers) and BERT-base (768, 12 heads of 64, 12 layers). Embedding and
// pooling are left out (one pass each, outside the layers).
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

struct EncoderLayerWeights {
  Tensor wq, wk, wv, wo, w1, w2;      // [out, in]
  Tensor bq, bk, bv, bo, b1, b2;      // [out]
  Tensor ln1_w, ln1_b, ln2_w, ln2_b;  // [hidden]
};

// Args: hidden, heads, layers, tokens per sequence, sequences (ffn = 4 · hidden).
void BM_CudaEncoderLayers(benchmark::State& state) {
  auto gpu = gpu_or_skip(state);
  if (!gpu) return;
  const int64_t hidden = state.range(0), heads = state.range(1), layers = state.range(2), len = state.range(3),
                batch = state.range(4);
  const int64_t rows = len * batch, ffn = 4 * hidden, d = hidden / heads;
  std::vector<EncoderLayerWeights> w;
  uint32_t seed = 10;
  for (int64_t l = 0; l < layers; ++l) {
    const auto matrix = [&](int64_t out, int64_t in) { return random_on(*gpu, {out, in}, 0.02f, seed++); };
    const auto vec = [&](int64_t n, float scale) { return random_on(*gpu, {n}, scale, seed++); };
    w.push_back({.wq = matrix(hidden, hidden), .wk = matrix(hidden, hidden), .wv = matrix(hidden, hidden),
                 .wo = matrix(hidden, hidden), .w1 = matrix(ffn, hidden), .w2 = matrix(hidden, ffn),
                 .bq = vec(hidden, 0.02f), .bk = vec(hidden, 0.02f), .bv = vec(hidden, 0.02f), .bo = vec(hidden, 0.02f),
                 .b1 = vec(ffn, 0.02f), .b2 = vec(hidden, 0.02f), .ln1_w = vec(hidden, 1.0f),
                 .ln1_b = vec(hidden, 0.02f), .ln2_w = vec(hidden, 1.0f), .ln2_b = vec(hidden, 0.02f)});
  }
  const Tensor input = random_on(*gpu, {rows, hidden}, 1.0f, 1);
  Tensor x = gpu->alloc({rows, hidden}, DType::bf16), q = gpu->alloc({rows, hidden}, DType::bf16),
         k = gpu->alloc({rows, hidden}, DType::bf16), v = gpu->alloc({rows, hidden}, DType::bf16),
         ctx = gpu->alloc({rows, hidden}, DType::bf16), proj = gpu->alloc({rows, hidden}, DType::bf16),
         h = gpu->alloc({rows, ffn}, DType::bf16);
  const EncoderSpans spans = equal_spans(*gpu, batch, len);
  const AttentionParams p{.num_heads = heads, .num_kv_heads = heads, .head_dim = d,
                          .scale = float(1.0 / std::sqrt(double(d)))};
  const auto forward = [&] {
    gpu->copy_rows(input, x, 0);
    for (const EncoderLayerWeights& l : w) {
      gpu->linear(x, l.wq, l.bq, q);
      gpu->linear(x, l.wk, l.bk, k);
      gpu->linear(x, l.wv, l.bv, v);
      gpu->encoder_attention(q, k, v, spans, {}, ctx, p);
      gpu->linear(ctx, l.wo, l.bo, proj);
      gpu->layer_norm(proj, x, l.ln1_w, l.ln1_b, 1e-12f, x);
      gpu->linear(x, l.w1, l.b1, h);
      gpu->gelu(h, false, h);
      gpu->linear(h, l.w2, l.b2, proj);
      gpu->layer_norm(proj, x, l.ln2_w, l.ln2_b, 1e-12f, x);
    }
  };
  forward();
  finish(*gpu, x);
  for (auto _ : state) {
    forward();
    finish(*gpu, x);
  }
  state.counters["sentences_per_s"] =
      benchmark::Counter(double(batch) * double(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_CudaEncoderLayers)
    ->Args({384, 12, 6, 128, 128})  // MiniLM-L6
    ->Args({384, 12, 6, 512, 32})
    ->Args({768, 12, 12, 128, 128})  // BERT-base
    ->Args({768, 12, 12, 512, 32})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace wick::bench
