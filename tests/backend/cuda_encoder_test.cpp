// The CUDA encoder ops (layer_norm, gelu, encoder_attention, encoder_pool) against double-precision references
// written here from the definitions in backend.h and transformers. Inputs are random values already rounded to bf16,
// so the references see exactly what the device sees. Skipped (not failed) on machines without a CUDA device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <tuple>
#include <vector>

#include "backend/backend.h"
#include "backend_test_util.h"
#include "test_util.h"

namespace wick::test {
namespace {

using CudaEncoder = CudaBackendTest;

// Relative L2 error of outputs stored in bf16 (8 significant bits: rounding alone gives about 3e-3); attention adds
// P rounded to bf16 before P·V.
constexpr double kBf16Tol = 1e-2;
// Pooled outputs are f32 sums of bf16 inputs, in f32.
constexpr double kPoolTol = 1e-5;

std::vector<double> values(const Tensor& host) {
  return std::vector<double>(host.data<float>(), host.data<float>() + host.numel());
}

Tensor host_tensor(const std::vector<double>& v, const Shape& shape) {
  Tensor t = Tensor::empty(shape, DType::f32);
  for (size_t i = 0; i < v.size(); ++i) t.data<float>()[i] = float(v[i]);
  return t;
}

// t + offset, rounded to bf16 again: rows whose mean is far from zero.
Tensor offset_bf16(const Tensor& t, float offset) {
  Tensor out = Tensor::empty(t.shape(), DType::f32);
  for (int64_t i = 0; i < t.numel(); ++i) out.data<float>()[i] = bf16_to_f32(f32_to_bf16(t.data<float>()[i] + offset));
  return out;
}

// --- layer_norm ---

std::vector<double> layer_norm_ref(const Tensor& x, const Tensor* residual, const Tensor& w, const Tensor& b,
                                   double eps) {
  const int64_t rows = x.dim(0), n = x.dim(1);
  std::vector<double> out(static_cast<size_t>(rows * n));
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<double> y(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i)
      y[i] = x.data<float>()[r * n + i] + (residual ? residual->data<float>()[r * n + i] : 0.0);
    const double mean = std::accumulate(y.begin(), y.end(), 0.0) / double(n);
    double var = 0.0;
    for (double v : y) var += (v - mean) * (v - mean);
    var /= double(n);
    for (int64_t i = 0; i < n; ++i)
      out[r * n + i] = (y[i] - mean) / std::sqrt(var + eps) * w.data<float>()[i] + b.data<float>()[i];
  }
  return out;
}

TEST_F(CudaEncoder, LayerNormWithAndWithoutResidual) {
  // 384 and 768: MiniLM and BERT; 1000 and 1024: the warp kernel's widest rows; 1030 (not a multiple of 8) and 2048:
  // the block kernel.
  for (int64_t n : {384, 768, 1000, 1024, 1030, 2048}) {
    const int64_t rows = 11;
    const Tensor x = offset_bf16(random_bf16_values({rows, n}, 1, 2.0f), 4.0f);
    const Tensor res = random_bf16_values({rows, n}, 2), w = random_bf16_values({n}, 3),
                 b = random_bf16_values({n}, 4, 0.5f);
    for (bool with_residual : {false, true}) {
      Tensor out = gpu->alloc({rows, n}, DType::bf16);
      gpu->layer_norm(on_gpu(x), with_residual ? on_gpu(res) : Tensor(), on_gpu(w), on_gpu(b), 1e-12f, out);
      const Tensor ref = host_tensor(layer_norm_ref(x, with_residual ? &res : nullptr, w, b, 1e-12), {rows, n});
      EXPECT_CLOSE(gpu->download(out), ref, kBf16Tol) << "n " << n << " residual " << with_residual;
    }
  }
}

TEST_F(CudaEncoder, LayerNormInPlace) {
  for (int64_t n : {768, 1030}) {
    const int64_t rows = 5;
    const Tensor x = random_bf16_values({rows, n}, 5, 3.0f), res = random_bf16_values({rows, n}, 6),
                 w = random_bf16_values({n}, 7), b = random_bf16_values({n}, 8);
    const Tensor ref = host_tensor(layer_norm_ref(x, &res, w, b, 1e-5), {rows, n});
    Tensor xb = on_gpu(x), rb = on_gpu(res);
    gpu->layer_norm(xb, rb, on_gpu(w), on_gpu(b), 1e-5f, xb);  // out = x (BERT's post-norm residual)
    EXPECT_CLOSE(gpu->download(xb), ref, kBf16Tol) << "out = x, n " << n;
    xb = on_gpu(x);
    gpu->layer_norm(xb, rb, on_gpu(w), on_gpu(b), 1e-5f, rb);  // out = residual
    EXPECT_CLOSE(gpu->download(rb), ref, kBf16Tol) << "out = residual, n " << n;
  }
}

// --- gelu ---

TEST_F(CudaEncoder, GeluExactAndTanhInPlace) {
  // bf16 storage cannot tell the two apart (they differ by less than 5e-4): each is held against its own formula.
  const auto gelu_ref = [](double x, bool tanh) {
    return tanh ? 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)))
                : 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
  };
  for (int64_t n : {4096, 1001}) {  // 16-byte vectors, and the scalar kernel
    const Tensor x = random_bf16_values({n}, 9, 3.0f);
    for (bool tanh : {false, true}) {
      std::vector<double> ref;
      for (double v : values(x)) ref.push_back(gelu_ref(v, tanh));
      Tensor out = gpu->alloc({n}, DType::bf16);
      gpu->gelu(on_gpu(x), tanh, out);
      EXPECT_CLOSE(gpu->download(out), host_tensor(ref, {n}), kBf16Tol) << "n " << n << " tanh " << tanh;
      Tensor in_place = on_gpu(x);
      gpu->gelu(in_place, tanh, in_place);
      EXPECT_CLOSE(gpu->download(in_place), host_tensor(ref, {n}), kBf16Tol) << "in place, n " << n;
    }
  }
}

// --- encoder_attention ---

// transformers' MPNetAttention.relative_position_bucket of one distance j − i, in torch's f32 arithmetic.
int64_t mpnet_bucket(int64_t relative, int64_t num_buckets, int64_t max_distance) {
  int64_t ret = 0, n = -relative;
  num_buckets /= 2;
  if (n < 0) ret += num_buckets;
  n = std::abs(n);
  const int64_t max_exact = num_buckets / 2;
  if (n < max_exact) return ret + n;
  const float scale = float(std::log(double(max_distance) / double(max_exact)));
  const float large = std::log(float(n) / float(max_exact)) / scale * float(num_buckets - max_exact);
  return ret + std::min<int64_t>(max_exact + int64_t(large), num_buckets - 1);
}

// --- linear_stack (cuBLASLt, the groups as strided batches, the bias in the epilogue) ---

TEST_F(CudaEncoder, LinearStackMatchesTheCpu) {
  for (const bool with_bias : {true, false})
    for (const auto& [rows, in, outs] : {std::tuple<int64_t, int64_t, int64_t>{37, 64, 48}, {512, 384, 384}}) {
      const int64_t groups = 3;
      const Tensor x = random_bf16_values({rows, in}, 11), w = random_bf16_values({groups * outs, in}, 12, 0.1f),
                   bias = random_bf16_values({groups * outs}, 13);
      Tensor got = gpu->alloc({groups * rows, outs}, DType::bf16), ref = cpu->alloc({groups * rows, outs}, DType::f32);
      gpu->linear_stack(on_gpu(x), gpu->upload_weight(w), with_bias ? on_gpu(bias) : Tensor(), got);
      cpu->linear_stack(on_cpu(x), cpu->upload_weight(w), with_bias ? on_cpu(bias) : Tensor(), ref);
      EXPECT_CLOSE(gpu->download(got), ref, kBf16Tol) << rows << "x" << in << " → 3x" << outs
                                                      << (with_bias ? " with" : " without") << " bias";
    }
}

TEST_F(CudaEncoder, LinearWithBiasMatchesTheCpu) {
  const Tensor x = random_bf16_values({300, 128}, 21), w = random_bf16_values({96, 128}, 22, 0.1f),
               bias = random_bf16_values({96}, 23);
  Tensor got = gpu->alloc({300, 96}, DType::bf16), ref = cpu->alloc({300, 96}, DType::f32);
  gpu->linear(on_gpu(x), gpu->upload_weight(w), on_gpu(bias), got);
  cpu->linear(on_cpu(x), cpu->upload_weight(w), on_cpu(bias), ref);
  EXPECT_CLOSE(gpu->download(got), ref, kBf16Tol);
}

// The GELU in cuBLASLt's epilogue is the tanh form (backend.h): against the CPU's erf form, within bf16's rounding.
TEST_F(CudaEncoder, LinearGeluMatchesTheCpuErfAndTanh) {
  const Tensor x = random_bf16_values({256, 128}, 31), w = random_bf16_values({512, 128}, 32, 0.1f),
               bias = random_bf16_values({512}, 33);
  for (const bool tanh : {false, true}) {
    Tensor got = gpu->alloc({256, 512}, DType::bf16), ref = cpu->alloc({256, 512}, DType::f32);
    gpu->linear_gelu(on_gpu(x), gpu->upload_weight(w), on_gpu(bias), tanh, got);
    cpu->linear_gelu(on_cpu(x), cpu->upload_weight(w), on_cpu(bias), tanh, ref);
    EXPECT_CLOSE(gpu->download(got), ref, kBf16Tol) << (tanh ? "tanh" : "erf");
  }
}

TEST(MpnetBucket, MatchesTransformers) {
  // MPNet's defaults (32 buckets, max distance 128): keys before the query in [0, 16), after it in [16, 32); exact
  // up to 7, then logarithmic up to 128.
  EXPECT_EQ(mpnet_bucket(0, 32, 128), 0);
  EXPECT_EQ(mpnet_bucket(-1, 32, 128), 1);
  EXPECT_EQ(mpnet_bucket(1, 32, 128), 17);
  EXPECT_EQ(mpnet_bucket(-8, 32, 128), 8);
  EXPECT_EQ(mpnet_bucket(-16, 32, 128), 10);
  EXPECT_EQ(mpnet_bucket(-64, 32, 128), 14);
  EXPECT_EQ(mpnet_bucket(-127, 32, 128), 15);
  EXPECT_EQ(mpnet_bucket(500, 32, 128), 31);
}

struct EncoderAttentionCase {
  std::vector<int32_t> lengths;
  int64_t heads, kv_heads, d;
  bool bias;
  int64_t num_buckets = 32, max_distance = 128;
};

// out [rows, heads·d]: softmax over the keys of each query's own sequence.
std::vector<double> encoder_attention_ref(const EncoderAttentionCase& c, const std::vector<int32_t>& starts,
                                          const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& table,
                                          double scale) {
  const int64_t rows = starts.back(), d = c.d, group = c.heads / c.kv_heads;
  std::vector<double> out(size_t(rows * c.heads * d), 0.0);
  const float *qv = q.data<float>(), *kv = k.data<float>(), *vv = v.data<float>();
  for (size_t s = 0; s + 1 < starts.size(); ++s)
    for (int64_t i = starts[s]; i < starts[s + 1]; ++i)
      for (int64_t h = 0; h < c.heads; ++h) {
        const int64_t g = h / group;
        std::vector<double> score;
        for (int64_t j = starts[s]; j < starts[s + 1]; ++j) {
          double dot = 0.0;
          for (int64_t e = 0; e < d; ++e)
            dot += double(qv[(i * c.heads + h) * d + e]) * kv[(j * c.kv_heads + g) * d + e];
          double x = dot * scale;
          if (c.bias) x += table.data<float>()[mpnet_bucket(j - i, c.num_buckets, c.max_distance) * c.heads + h];
          score.push_back(x);
        }
        const double mx = *std::max_element(score.begin(), score.end());
        double sum = 0.0;
        for (double& x : score) sum += (x = std::exp(x - mx));
        for (int64_t j = starts[s]; j < starts[s + 1]; ++j)
          for (int64_t e = 0; e < d; ++e)
            out[(i * c.heads + h) * d + e] += score[j - starts[s]] / sum * vv[(j * c.kv_heads + g) * d + e];
      }
  return out;
}

TEST(EncoderAttentionReference, MatchesCausalAttentionWhereEveryQuerySeesEveryKey) {
  // The reference above against the CPU backend's causal attention() with every query at the last position: one
  // sequence, no bias, is then the same softmax. Runs without a GPU.
  const EncoderAttentionCase c{{33}, 4, 2, 32, false};
  const Tensor q = random_bf16_values({33, 4, 32}, 60), k = random_bf16_values({33, 2, 32}, 61),
               v = random_bf16_values({33, 2, 32}, 62);
  const double scale = 1.0 / std::sqrt(32.0);
  auto cpu = make_cpu_backend();
  Tensor out = cpu->alloc({33, 128}, DType::f32);
  cpu->attention(cpu->upload(q, DType::f32), cpu->upload(k, DType::f32), cpu->upload(v, DType::f32),
                 Tensor::from_ints(std::vector<int32_t>(33, 32), {33}), out,
                 {.num_heads = 4, .num_kv_heads = 2, .head_dim = 32, .scale = float(scale)});
  EXPECT_CLOSE(cpu->download(out), host_tensor(encoder_attention_ref(c, {0, 33}, q, k, v, Tensor(), scale), {33, 128}),
               1e-5);
}

TEST_F(CudaEncoder, AttentionOverRaggedPackedSequences) {
  const std::vector<int32_t> ragged = {1, 7, 0, 33, 128, 300};  // an empty sequence too
  const EncoderAttentionCase cases[] = {
      {ragged, 12, 12, 32, false},  // MiniLM's heads
      {ragged, 12, 12, 32, true},
      {ragged, 12, 12, 64, false},  // BERT's heads
      {ragged, 12, 12, 64, true},   // MPNet: distances past max_distance share the last bucket
      {ragged, 8, 2, 64, true},     // grouped-query
      {{5, 64, 2}, 4, 4, 64, true},  // every distance inside max_distance
      {{70, 3}, 4, 2, 128, false},
      {{70, 3}, 2, 1, 80, true},
      {{600, 17}, 2, 2, 64, true, 32, 1000},  // longer than a typical encoder takes, other bucket edges
  };
  uint32_t seed = 20;
  for (const EncoderAttentionCase& c : cases) {
    std::vector<int32_t> starts = {0};
    for (int32_t len : c.lengths) starts.push_back(starts.back() + len);
    const int64_t rows = starts.back(), max_len = *std::max_element(c.lengths.begin(), c.lengths.end());
    const Tensor q = random_bf16_values({rows, c.heads, c.d}, seed++),
                 k = random_bf16_values({rows, c.kv_heads, c.d}, seed++),
                 v = random_bf16_values({rows, c.kv_heads, c.d}, seed++),
                 table = random_bf16_values({c.num_buckets, c.heads}, seed++, 2.0f);
    const double scale = 1.0 / std::sqrt(double(c.d));
    const AttentionParams p{.num_heads = c.heads, .num_kv_heads = c.kv_heads, .head_dim = c.d, .scale = float(scale)};
    const EncoderSpans spans{.starts = on_gpu(Tensor::from_ints(starts, {int64_t(starts.size())})), .max_len = max_len};
    const RelativeBias bias{.table = c.bias ? on_gpu(table) : Tensor(), .num_buckets = c.num_buckets,
                            .max_distance = c.max_distance};
    Tensor out = gpu->alloc({rows, c.heads * c.d}, DType::bf16);
    gpu->encoder_attention(on_gpu(q), on_gpu(k), on_gpu(v), spans, bias, out, p);
    const Tensor got = gpu->download(out);
    const std::vector<double> ref = encoder_attention_ref(c, starts, q, k, v, table, scale);
    // Sequence by sequence: a query that saw another sequence's keys shows in its own sequence's error.
    const int64_t width = c.heads * c.d;
    for (size_t s = 0; s + 1 < starts.size(); ++s) {
      if (starts[s + 1] == starts[s]) continue;
      const std::vector<double> part(ref.begin() + starts[s] * width, ref.begin() + starts[s + 1] * width);
      EXPECT_CLOSE(got.rows(starts[s], starts[s + 1]), host_tensor(part, {starts[s + 1] - starts[s], width}), kBf16Tol)
          << "sequence " << s << " of length " << c.lengths[s] << ", heads " << c.heads << "/" << c.kv_heads << " d "
          << c.d << " bias " << c.bias;
    }
  }
}

TEST_F(CudaEncoder, AttentionBiasChangesTheResult) {
  // The same inputs with and without the bias differ by far more than the tolerance: the bias is applied.
  const std::vector<int32_t> starts = {0, 40};
  const Tensor q = random_bf16_values({40, 2, 32}, 30), k = random_bf16_values({40, 2, 32}, 31),
               v = random_bf16_values({40, 2, 32}, 32), table = random_bf16_values({32, 2}, 33, 2.0f);
  const AttentionParams p{.num_heads = 2, .num_kv_heads = 2, .head_dim = 32, .scale = 0.2f};
  const EncoderSpans spans{.starts = on_gpu(Tensor::from_ints(starts, {2})), .max_len = 40};
  Tensor with = gpu->alloc({40, 64}, DType::bf16), without = gpu->alloc({40, 64}, DType::bf16);
  gpu->encoder_attention(on_gpu(q), on_gpu(k), on_gpu(v), spans, {.table = on_gpu(table)}, with, p);
  gpu->encoder_attention(on_gpu(q), on_gpu(k), on_gpu(v), spans, {}, without, p);
  EXPECT_GT(compare(gpu->download(with), gpu->download(without)).rel_l2, 10 * kBf16Tol);
}

// --- encoder_pool ---

TEST_F(CudaEncoder, PoolEveryModeWithAndWithoutNormalize) {
  const int64_t rows = 469;
  // Spans of lengths 1, 7, 0, 33, 128, 300, and one that overlaps others (spans need not tile the rows).
  const std::vector<int32_t> spans = {0, 1, 1, 8, 8, 8, 8, 41, 41, 169, 169, 469, 100, 110};
  const int64_t sequences = int64_t(spans.size()) / 2;
  for (int64_t n : {384, 77}) {
    const Tensor x = random_bf16_values({rows, n}, 40, 2.0f);
    for (PoolMode mode : {PoolMode::mean, PoolMode::max, PoolMode::cls, PoolMode::last})
      for (bool normalize : {false, true}) {
        std::vector<double> ref(size_t(sequences * n), 0.0);
        for (int64_t s = 0; s < sequences; ++s) {
          const int64_t a = spans[2 * s], b = spans[2 * s + 1];
          if (a == b) continue;  // zeros
          double ss = 0.0;
          for (int64_t c = 0; c < n; ++c) {
            const auto at = [&](int64_t r) { return double(x.data<float>()[r * n + c]); };
            double v = 0.0;
            switch (mode) {
              case PoolMode::mean:
                for (int64_t r = a; r < b; ++r) v += at(r);
                v /= double(b - a);
                break;
              case PoolMode::max:
                v = at(a);
                for (int64_t r = a; r < b; ++r) v = std::max(v, at(r));
                break;
              case PoolMode::cls: v = at(a); break;
              case PoolMode::last: v = at(b - 1); break;
            }
            ref[s * n + c] = v;
            ss += v * v;
          }
          if (normalize)
            for (int64_t c = 0; c < n; ++c) ref[s * n + c] /= std::max(std::sqrt(ss), 1e-12);
        }
        Tensor out = gpu->alloc({sequences, n}, DType::f32);
        gpu->encoder_pool(on_gpu(x), on_gpu(Tensor::from_ints(spans, {sequences, 2})), mode, normalize, out);
        const Tensor got = gpu->download(out);
        EXPECT_CLOSE(got, host_tensor(ref, {sequences, n}), kPoolTol)
            << "mode " << int(mode) << " normalize " << normalize << " n " << n;
        for (int64_t c = 0; c < n; ++c) ASSERT_EQ(got.data<float>()[2 * n + c], 0.0f) << "the empty span";
      }
  }
}

// --- bad input ---

TEST_F(CudaEncoder, RejectsMismatchedShapesAndDtypes) {
  const Tensor x = on_gpu(random_bf16_values({4, 64}, 50)), w = on_gpu(random_bf16_values({64}, 51));
  Tensor out = gpu->alloc({4, 64}, DType::bf16);
  EXPECT_WICK_ERROR(gpu->layer_norm(x, Tensor(), on_gpu(random_bf16_values({32}, 52)), w, 1e-5f, out),
                    ErrorKind::internal, "layer_norm", "weight [32]");
  EXPECT_WICK_ERROR(gpu->layer_norm(gpu->upload(random_bf16_values({4, 64}, 53), DType::f32), Tensor(), w, w, 1e-5f,
                                    out),
                    ErrorKind::internal, "layer_norm", "x must be a CUDA bf16 tensor");
  Tensor wide = gpu->alloc({4, 65}, DType::bf16);
  EXPECT_WICK_ERROR(gpu->gelu(x, false, wide), ErrorKind::internal, "gelu");

  const EncoderSpans spans{.starts = on_gpu(Tensor::from_ints({0, 4}, {2})), .max_len = 4};
  const AttentionParams p{.num_heads = 2, .num_kv_heads = 2, .head_dim = 32, .scale = 1.0f};
  EXPECT_WICK_ERROR(gpu->encoder_attention(x, x.rows(0, 3), x, spans, {}, out, p), ErrorKind::internal,
                    "encoder_attention", "k [3, 64]");
  EXPECT_WICK_ERROR(gpu->encoder_attention(x, x, x, spans, {.table = on_gpu(random_bf16_values({32, 3}, 54))}, out, p),
                    ErrorKind::internal, "encoder_attention", "relative bias table [32, 3]");
  const Tensor odd = on_gpu(random_bf16_values({4, 48}, 55));
  Tensor odd_out = gpu->alloc({4, 48}, DType::bf16);
  EXPECT_WICK_ERROR(gpu->encoder_attention(odd, odd, odd, spans, {}, odd_out,
                                           {.num_heads = 2, .num_kv_heads = 2, .head_dim = 24, .scale = 1.0f}),
                    ErrorKind::unsupported, "head_dim 24");

  const Tensor pool_spans = on_gpu(Tensor::from_ints({0, 2, 2, 4}, {2, 2}));
  Tensor pooled_bf16 = gpu->alloc({2, 64}, DType::bf16), pooled_narrow = gpu->alloc({2, 63}, DType::f32);
  EXPECT_WICK_ERROR(gpu->encoder_pool(x, pool_spans, PoolMode::mean, false, pooled_bf16), ErrorKind::internal,
                    "encoder_pool", "out must be a CUDA f32 tensor");
  EXPECT_WICK_ERROR(gpu->encoder_pool(x, pool_spans, PoolMode::mean, false, pooled_narrow), ErrorKind::internal,
                    "encoder_pool", "out [2, 63]");
}

}  // namespace
}  // namespace wick::test
