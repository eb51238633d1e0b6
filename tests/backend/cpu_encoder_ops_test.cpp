// The CPU backend's encoder ops (backend.h, "Encoder ops") against straightforward double-precision references
// written here: LayerNorm, GELU (erf and tanh), bidirectional attention within packed sequences (grouped-query,
// with and without MPNet's relative-position bias), and the four pooling modes with and without normalisation.
//
// Tolerances: the ops compute in f32 (sums of a row in double where they reduce one), so each output carries a few
// f32 roundings: 1e-5 relative L2 for LayerNorm, GELU and pooling; 1e-5 for attention, whose vector exp is a
// polynomial of relative error ≈ 1e-7 (cpu_kernels.h). A wrong term (a variance off by n/(n−1), a key of another
// sequence seen, a bias of the transposed position) moves outputs by 1e-2 or more.
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <random>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/cpu_encoder.h"
#include "backend_test_util.h"
#include "test_util.h"

namespace wick::test {
namespace {

constexpr double kTol = 1e-5;

// transformers' MPNet relative_position_bucket (modeling_mpnet.py), written out for one position:
//   ret = 0; n = -relative_position; num_buckets //= 2; ret += (n < 0) * num_buckets; n = abs(n)
//   max_exact = num_buckets // 2; is_small = n < max_exact
//   val_if_large = max_exact + (log(n.float() / max_exact) / log(max_distance / max_exact)
//                                * (num_buckets - max_exact)).to(long)
//   ret += where(is_small, n, min(val_if_large, num_buckets - 1))
int64_t transformers_bucket(int64_t relative_position, int64_t num_buckets, int64_t max_distance) {
  int64_t ret = 0, n = -relative_position;
  num_buckets /= 2;
  ret += n < 0 ? num_buckets : 0;
  n = std::abs(n);
  const int64_t max_exact = num_buckets / 2;
  if (n < max_exact) return ret + n;
  const float large = std::log(float(n) / float(max_exact)) /
                      float(std::log(double(max_distance) / double(max_exact))) * float(num_buckets - max_exact);
  return ret + std::min<int64_t>(max_exact + int64_t(large), num_buckets - 1);
}

// linear_stack: each group exactly linear() of its rows of the stacked weight, with and without a bias, f32 and
// bf16 weights (both as upload_weight keeps them).
TEST(CpuEncoderOps, LinearStackIsEachGroupsLinear) {
  auto cpu = make_cpu_backend();
  std::mt19937 rng(7);
  const int64_t rows = 13, in = 24, outs = 20, groups = 3;
  const Tensor x = random_normal({rows, in}, rng);
  for (const DType weight_dtype : {DType::f32, DType::bf16})
    for (const bool with_bias : {true, false}) {
      const Tensor w = cpu->upload_weight(random_normal({groups * outs, in}, rng, 0.2f).to(weight_dtype));
      const Tensor bias = with_bias ? random_normal({groups * outs}, rng) : Tensor();
      Tensor out = Tensor::empty({groups * rows, outs}, DType::f32);
      cpu->linear_stack(x, w, bias, out);
      for (int64_t g = 0; g < groups; ++g) {
        Tensor one = Tensor::empty({rows, outs}, DType::f32);
        cpu->linear(x, w.rows(g * outs, (g + 1) * outs), with_bias ? bias.rows(g * outs, (g + 1) * outs) : Tensor(),
                    one);
        for (int64_t i = 0; i < one.numel(); ++i)
          ASSERT_EQ(out.data<float>()[g * rows * outs + i], one.data<float>()[i])
              << "group " << g << " element " << i << (with_bias ? " with" : " without") << " bias";
      }
    }
}

TEST(CpuEncoderOps, LinearStackRejectsShapesThatAreNotGroups) {
  auto cpu = make_cpu_backend();
  std::mt19937 rng(8);
  const Tensor x = random_normal({4, 8}, rng), w = random_normal({15, 8}, rng), bias = random_normal({14}, rng);
  Tensor out = Tensor::empty({12, 5}, DType::f32);  // 3 groups of 5 outputs
  cpu->linear_stack(x, w, Tensor(), out);
  Tensor wrong_rows = Tensor::empty({10, 5}, DType::f32);
  EXPECT_WICK_ERROR(cpu->linear_stack(x, w, Tensor(), wrong_rows), ErrorKind::internal, "linear_stack", "[10, 5]");
  EXPECT_WICK_ERROR(cpu->linear_stack(x, w, bias, out), ErrorKind::internal, "bias [14]");
  Tensor wrong_outs = Tensor::empty({12, 4}, DType::f32);
  EXPECT_WICK_ERROR(cpu->linear_stack(x, w, Tensor(), wrong_outs), ErrorKind::internal, "not groups");
}

TEST(CpuEncoderOps, RelativePositionBucketIsTransformersFormula) {
  // Values of the formula for 32 buckets and max_distance 128 (MPNet's defaults), worked out by hand: keys before
  // the query (negative relative positions) take buckets [0, 16), keys after it [16, 32).
  const std::vector<std::pair<int64_t, int64_t>> known = {
      {0, 0},   {-1, 1},   {1, 17},   {-7, 7},    {7, 23},    {-8, 8},     {-11, 8},   {-12, 9}, {-16, 10},
      {16, 26}, {-32, 12}, {-64, 14}, {-127, 15}, {-128, 15}, {-1000, 15}, {1000, 31}, {64, 30}};
  for (const auto& [r, bucket] : known) EXPECT_EQ(cpu::relative_position_bucket(r, 32, 128), bucket) << r;
  for (int64_t buckets : {8, 32, 64})
    for (int64_t max_distance : {16, 128, 256})
      for (int64_t r = -600; r <= 600; ++r)
        ASSERT_EQ(cpu::relative_position_bucket(r, buckets, max_distance),
                  transformers_bucket(r, buckets, max_distance))
            << "r " << r << " buckets " << buckets << " max_distance " << max_distance;
}

TEST(CpuEncoderOps, LayerNormMatchesReference) {
  auto b = make_cpu_backend();
  std::mt19937 rng(1);
  const int64_t rows = 7, n = 96;
  const Tensor x = random_normal({rows, n}, rng, 2.0f), res = random_normal({rows, n}, rng);
  const Tensor w = random_normal({n}, rng), bias = random_normal({n}, rng);
  for (bool with_residual : {false, true}) {
    Tensor ref = Tensor::empty({rows, n}, DType::f32);
    for (int64_t r = 0; r < rows; ++r) {
      std::vector<double> y(static_cast<size_t>(n));
      double mean = 0, var = 0;
      for (int64_t i = 0; i < n; ++i) {
        y[size_t(i)] = double(x.data<float>()[r * n + i]) + (with_residual ? res.data<float>()[r * n + i] : 0.0);
        mean += y[size_t(i)] / double(n);
      }
      for (int64_t i = 0; i < n; ++i) var += (y[size_t(i)] - mean) * (y[size_t(i)] - mean) / double(n);
      for (int64_t i = 0; i < n; ++i)
        ref.data<float>()[r * n + i] =
            float((y[size_t(i)] - mean) / std::sqrt(var + 1e-12) * w.data<float>()[i] + bias.data<float>()[i]);
    }
    Tensor out = Tensor::empty({rows, n}, DType::f32);
    b->layer_norm(x, with_residual ? res : Tensor(), w, bias, 1e-12f, out);
    EXPECT_CLOSE(out, ref, kTol);
    Tensor in_place = x.clone();  // out aliasing x: BERT's post-norm residual
    b->layer_norm(in_place, with_residual ? res : Tensor(), w, bias, 1e-12f, in_place);
    EXPECT_CLOSE(in_place, ref, kTol);
  }
}

TEST(CpuEncoderOps, GeluErfAndTanhMatchReference) {
  auto b = make_cpu_backend();
  std::mt19937 rng(2);
  const Tensor x = random_normal({5, 333}, rng, 3.0f);
  for (bool tanh : {false, true}) {
    Tensor ref = Tensor::empty(x.shape(), DType::f32);
    for (int64_t i = 0; i < x.numel(); ++i) {
      const double v = x.data<float>()[i];
      ref.data<float>()[i] =
          tanh ? float(0.5 * v * (1 + std::tanh(std::sqrt(2 / std::numbers::pi) * (v + 0.044715 * v * v * v))))
               : float(0.5 * v * (1 + std::erf(v / std::numbers::sqrt2)));
    }
    Tensor out = Tensor::empty(x.shape(), DType::f32);
    b->gelu(x, tanh, out);
    EXPECT_CLOSE(out, ref, kTol) << (tanh ? "tanh" : "erf");
    // The two differ by up to ~1e-3: each is checked against its own formula, not the other.
    Tensor other = Tensor::empty(x.shape(), DType::f32);
    b->gelu(x, !tanh, other);
    EXPECT_GT(compare(other, ref).rel_l2, 1e-5);
  }
}

// The double-precision reference of encoder_attention: each query of sequence s against every key of s.
Tensor attention_reference(const Tensor& q, const Tensor& k, const Tensor& v, const std::vector<int32_t>& starts,
                           const Tensor& table, int64_t buckets, int64_t max_distance, const AttentionParams& p) {
  const int64_t rows = q.dim(0), heads = p.num_heads, kvh = p.num_kv_heads, d = p.head_dim;
  Tensor out = Tensor::zeros({rows, heads * d}, DType::f32);
  for (size_t s = 0; s + 1 < starts.size(); ++s) {
    const int64_t begin = starts[s], len = starts[s + 1] - begin;
    for (int64_t i = 0; i < len; ++i)
      for (int64_t h = 0; h < heads; ++h) {
        const int64_t kv = h / (heads / kvh);
        std::vector<double> score(static_cast<size_t>(len));
        double max = -1e300, sum = 0;
        for (int64_t j = 0; j < len; ++j) {
          double dot = 0;
          for (int64_t e = 0; e < d; ++e)
            dot += double(q.data<float>()[((begin + i) * heads + h) * d + e]) *
                   k.data<float>()[((begin + j) * kvh + kv) * d + e];
          score[size_t(j)] = dot * p.scale;
          if (table.defined())
            score[size_t(j)] += table.data<float>()[transformers_bucket(j - i, buckets, max_distance) * heads + h];
          max = std::max(max, score[size_t(j)]);
        }
        for (double& sc : score) sum += (sc = std::exp(sc - max));
        for (int64_t e = 0; e < d; ++e) {
          double acc = 0;
          for (int64_t j = 0; j < len; ++j)
            acc += score[size_t(j)] / sum * v.data<float>()[((begin + j) * kvh + kv) * d + e];
          out.data<float>()[(begin + i) * heads * d + h * d + e] = float(acc);
        }
      }
  }
  return out;
}

TEST(CpuEncoderOps, EncoderAttentionWithinPackedSequences) {
  auto b = make_cpu_backend();
  std::mt19937 rng(3);
  // Lengths 3, 1, 0, 40, 7: a one-token sequence, an empty one, and one long enough for the logarithmic buckets.
  const std::vector<int32_t> starts = {0, 3, 4, 4, 44, 51};
  const int64_t rows = 51, heads = 4, kvh = 2, d = 16, buckets = 32, max_distance = 16;
  const AttentionParams p{.num_heads = heads, .num_kv_heads = kvh, .head_dim = d, .scale = 0.25f};
  const Tensor q = random_normal({rows, heads, d}, rng), k = random_normal({rows, kvh, d}, rng);
  const Tensor v = random_normal({rows, kvh, d}, rng);
  const Tensor table = random_normal({buckets, heads}, rng, 2.0f);
  const EncoderSpans spans{.starts = Tensor::from_ints(starts, {int64_t(starts.size())}), .max_len = 40};
  for (bool with_bias : {false, true}) {
    const RelativeBias bias =
        with_bias ? RelativeBias{.table = table, .num_buckets = buckets, .max_distance = max_distance} : RelativeBias{};
    Tensor out = Tensor::empty({rows, heads * d}, DType::f32);
    b->encoder_attention(q, k, v, spans, bias, out, p);
    const Tensor ref = attention_reference(q, k, v, starts, with_bias ? table : Tensor(), buckets, max_distance, p);
    EXPECT_CLOSE(out, ref, kTol) << (with_bias ? "with bias" : "without bias");
  }
  // The same sequences one at a time give the same rows: nothing leaks between sequences of a batch.
  Tensor packed = Tensor::empty({rows, heads * d}, DType::f32);
  b->encoder_attention(q, k, v, spans, {}, packed, p);
  Tensor alone = Tensor::empty({40, heads * d}, DType::f32);
  b->encoder_attention(q.rows(4, 44), k.rows(4, 44), v.rows(4, 44),
                       {.starts = Tensor::from_ints({0, 40}, {2}), .max_len = 40}, {}, alone, p);
  EXPECT_CLOSE(packed.rows(4, 44), alone, 1e-7);
}

TEST(CpuEncoderOps, EncoderPoolModesMatchReference) {
  auto b = make_cpu_backend();
  std::mt19937 rng(4);
  const int64_t rows = 20, n = 24;
  const Tensor x = random_normal({rows, n}, rng);
  // Spans may skip rows (a prompt left out of the mean) and may be empty (zeros).
  const std::vector<int32_t> spans = {0, 5, 7, 8, 8, 8, 10, 20, 2, 9};
  const int64_t seqs = int64_t(spans.size()) / 2;
  for (PoolMode mode : {PoolMode::mean, PoolMode::max, PoolMode::cls, PoolMode::last})
    for (bool normalize : {false, true}) {
      Tensor ref = Tensor::zeros({seqs, n}, DType::f32);
      for (int64_t s = 0; s < seqs; ++s) {
        const int64_t begin = spans[size_t(2 * s)], end = spans[size_t(2 * s + 1)];
        if (begin == end) continue;
        std::vector<double> v(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) {
          const auto at = [&](int64_t t) { return double(x.data<float>()[t * n + i]); };
          double r = mode == PoolMode::max ? -1e300 : 0.0;
          for (int64_t t = begin; t < end; ++t) r = mode == PoolMode::max ? std::max(r, at(t)) : r + at(t);
          if (mode == PoolMode::mean) r /= double(end - begin);
          if (mode == PoolMode::cls) r = at(begin);
          if (mode == PoolMode::last) r = at(end - 1);
          v[size_t(i)] = r;
        }
        double norm = 0;
        for (double e : v) norm += e * e;
        norm = normalize ? std::max(std::sqrt(norm), 1e-12) : 1.0;
        for (int64_t i = 0; i < n; ++i) ref.data<float>()[s * n + i] = float(v[size_t(i)] / norm);
      }
      Tensor out = Tensor::empty({seqs, n}, DType::f32);
      b->encoder_pool(x, Tensor::from_ints(spans, {seqs, 2}), mode, normalize, out);
      EXPECT_CLOSE(out, ref, kTol) << int(mode) << " normalize " << normalize;
      for (int64_t i = 0; i < n; ++i) EXPECT_EQ(out.data<float>()[2 * n + i], 0.0f) << "the empty span";
    }
}

}  // namespace
}  // namespace wick::test
