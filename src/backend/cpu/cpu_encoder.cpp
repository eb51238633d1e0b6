// The CPU encoder ops: LayerNorm, GELU, bidirectional attention within the sequences of a packed batch (with MPNet's
// relative-position bias), and the pooling of each sequence's rows to one vector. f32 in and out; sums in double
// where a row is reduced (LayerNorm's moments, the pooled mean, the norm).
#include "backend/cpu/cpu_encoder.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <vector>

#include "backend/cpu/cpu_backward.h"
#include "backend/cpu/cpu_kernels.h"
#include "core/thread_pool.h"

namespace wick::cpu {

void layer_norm(const Tensor& x, const Tensor& residual, const Tensor& weight, const Tensor& bias, float eps,
                Tensor& out) {
  const int64_t rows = x.rank() == 0 ? 0 : x.dim(0), n = row_size(x);
  expect(weight.numel() == n && bias.numel() == n && out.numel() == x.numel() &&
             (!residual.defined() || residual.numel() == x.numel()),
         "layer_norm", "x " + to_string(x.shape()) + " weight " + to_string(weight.shape()));
  const float* xp = x.data<float>();
  const float* rp = residual.defined() ? residual.data<float>() : nullptr;
  const float *w = weight.data<float>(), *b = bias.data<float>();
  float* o = out.data<float>();
  parallel_for(rows, kRowGrain, [&](int64_t r0, int64_t r1) {
    std::vector<float> y(static_cast<size_t>(n));  // x + residual: out may alias either
    for (int64_t r = r0; r < r1; ++r) {
      double sum = 0.0;
      for (int64_t i = 0; i < n; ++i) {
        y[size_t(i)] = rp ? xp[r * n + i] + rp[r * n + i] : xp[r * n + i];
        sum += y[size_t(i)];
      }
      const double mean = sum / double(n);
      double ss = 0.0;
      for (int64_t i = 0; i < n; ++i) ss += (y[size_t(i)] - mean) * (y[size_t(i)] - mean);
      const double inv = 1.0 / std::sqrt(ss / double(n) + double(eps));
      for (int64_t i = 0; i < n; ++i) o[r * n + i] = float((y[size_t(i)] - mean) * inv) * w[i] + b[i];
    }
  });
}

void gelu(const Tensor& x, bool tanh, Tensor& out) {
  const int64_t n = x.numel();
  expect(out.numel() == n, "gelu", "x " + to_string(x.shape()) + " out " + to_string(out.shape()));
  const float* xp = x.data<float>();
  float* o = out.data<float>();
  parallel_for(n, kElementGrain, [&](int64_t i0, int64_t i1) {
    if (tanh) {
      const float c = float(std::sqrt(2.0 / std::numbers::pi));
      for (int64_t i = i0; i < i1; ++i) {
        const float v = xp[i];
        o[i] = 0.5f * v * (1.0f + std::tanh(c * (v + 0.044715f * v * v * v)));
      }
    } else {
      for (int64_t i = i0; i < i1; ++i)
        o[i] = 0.5f * xp[i] * (1.0f + std::erf(xp[i] * float(1.0 / std::numbers::sqrt2)));
    }
  });
}

int64_t relative_position_bucket(int64_t relative_position, int64_t num_buckets, int64_t max_distance) {
  const int64_t half = num_buckets / 2, max_exact = half / 2;
  int64_t n = -relative_position;
  const int64_t ret = n < 0 ? half : 0;
  n = std::abs(n);
  if (n < max_exact) return ret + n;
  // torch computes the log in f32 (the tensor's dtype, the Python scalars converted to it), then truncates.
  const float scaled = std::log(float(n) / float(max_exact)) /
                       float(std::log(double(max_distance) / double(max_exact))) * float(half - max_exact);
  return ret + std::min<int64_t>(max_exact + int64_t(scaled), half - 1);
}

void encoder_attention(const Tensor& q, const Tensor& k, const Tensor& v, const EncoderSpans& spans,
                       const RelativeBias& bias, Tensor& out, const AttentionParams& p) {
  const int64_t rows = q.dim(0), heads = p.num_heads, d = p.head_dim, kvh = p.num_kv_heads;
  const int64_t seqs = spans.starts.numel() - 1;
  expect(seqs >= 0 && heads > 0 && kvh > 0 && heads % kvh == 0 && q.numel() == rows * heads * d &&
             k.numel() == rows * kvh * d && v.numel() == k.numel() && out.numel() == q.numel(),
         "encoder_attention",
         "q " + to_string(q.shape()) + " k " + to_string(k.shape()) + " out " + to_string(out.shape()));
  const int32_t* starts = spans.starts.data<int32_t>();
  expect(seqs < 0 || (starts[0] == 0 && starts[seqs] == rows), "encoder_attention",
         "spans cover rows [" + std::to_string(starts[0]) + ", " + std::to_string(starts[seqs]) + ") of " +
             std::to_string(rows));
  // Each row's sequence, and the longest sequence (the spans' own, whatever max_len says).
  std::vector<int32_t> seq_of(static_cast<size_t>(rows));
  int64_t max_len = 0;
  for (int64_t s = 0; s < seqs; ++s) {
    expect(starts[s + 1] >= starts[s], "encoder_attention", "spans decrease at sequence " + std::to_string(s));
    max_len = std::max<int64_t>(max_len, starts[s + 1] - starts[s]);
    for (int64_t t = starts[s]; t < starts[s + 1]; ++t) seq_of[size_t(t)] = int32_t(s);
  }
  // The bias of each relative position j − i ∈ [−(max_len − 1), max_len − 1], per head: bias_of[(j − i + max_len − 1)
  // · heads + h].
  std::vector<float> bias_of;
  if (bias.defined()) {
    expect(bias.table.rank() == 2 && bias.table.dim(0) == bias.num_buckets && bias.table.dim(1) == heads,
           "encoder_attention",
           "bias table " + to_string(bias.table.shape()) + " for " + std::to_string(heads) + " heads");
    const float* table = bias.table.data<float>();
    bias_of.resize(static_cast<size_t>(std::max<int64_t>(0, 2 * max_len - 1) * heads));
    for (int64_t r = -(max_len - 1); r <= max_len - 1; ++r) {
      const int64_t bucket = relative_position_bucket(r, bias.num_buckets, bias.max_distance);
      for (int64_t h = 0; h < heads; ++h) bias_of[size_t((r + max_len - 1) * heads + h)] = table[bucket * heads + h];
    }
  }
  const float *qp = q.data<float>(), *kp = k.data<float>(), *vp = v.data<float>();
  float* op = out.data<float>();
  const int64_t group = heads / kvh;
  const int64_t grain = std::max<int64_t>(1, kAttentionGrainWork / std::max<int64_t>(1, max_len * d));
  parallel_for(rows * heads, grain, [&](int64_t w0, int64_t w1) {
    std::vector<float> probs(static_cast<size_t>(max_len));
    for (int64_t w = w0; w < w1; ++w) {
      const int64_t t = w / heads, h = w % heads, kv = h / group;
      const int64_t begin = starts[seq_of[size_t(t)]], len = starts[seq_of[size_t(t)] + 1] - begin, i = t - begin;
      attention_scores(qp + (t * heads + h) * d, kp + (begin * kvh + kv) * d, kvh * d, len, d, p.scale, probs.data());
      if (!bias_of.empty())
        for (int64_t j = 0; j < len; ++j) probs[size_t(j)] += bias_of[size_t((j - i + max_len - 1) * heads + h)];
      const float inv = 1.0f / softmax_exp(probs.data(), len);
      for (int64_t j = 0; j < len; ++j) probs[size_t(j)] *= inv;
      float* ot = op + (t * heads + h) * d;
      std::fill(ot, ot + d, 0.0f);
      attention_values(probs.data(), vp + (begin * kvh + kv) * d, kvh * d, len, d, ot);
    }
  });
}

void encoder_pool(const Tensor& x, const Tensor& spans, PoolMode mode, bool normalize, Tensor& out) {
  const int64_t rows = x.rank() == 0 ? 0 : x.dim(0), n = row_size(x), seqs = spans.rank() == 0 ? 0 : spans.dim(0);
  expect(
      spans.dtype() == DType::i32 && spans.numel() == 2 * seqs && out.dtype() == DType::f32 && out.numel() == seqs * n,
      "encoder_pool",
      "x " + to_string(x.shape()) + " spans " + to_string(spans.shape()) + " out " + to_string(out.shape()));
  const int32_t* sp = spans.data<int32_t>();
  for (int64_t s = 0; s < seqs; ++s)
    expect(sp[2 * s] >= 0 && sp[2 * s] <= sp[2 * s + 1] && sp[2 * s + 1] <= rows, "encoder_pool",
           "span " + std::to_string(s) + " [" + std::to_string(sp[2 * s]) + ", " + std::to_string(sp[2 * s + 1]) +
               ") outside rows [0, " + std::to_string(rows) + ")");
  const float* xp = x.data<float>();
  float* o = out.data<float>();
  parallel_for(seqs, 1, [&](int64_t s0, int64_t s1) {
    std::vector<double> acc(static_cast<size_t>(n));
    for (int64_t s = s0; s < s1; ++s) {
      const int64_t begin = sp[2 * s], end = sp[2 * s + 1];
      float* os = o + s * n;
      if (begin == end) {
        std::fill(os, os + n, 0.0f);
        continue;
      }
      switch (mode) {
        case PoolMode::mean:
          std::fill(acc.begin(), acc.end(), 0.0);
          for (int64_t t = begin; t < end; ++t)
            for (int64_t i = 0; i < n; ++i) acc[size_t(i)] += xp[t * n + i];
          for (int64_t i = 0; i < n; ++i) os[i] = float(acc[size_t(i)] / double(end - begin));
          break;
        case PoolMode::max:
          std::fill(os, os + n, -std::numeric_limits<float>::infinity());
          for (int64_t t = begin; t < end; ++t)
            for (int64_t i = 0; i < n; ++i) os[i] = std::max(os[i], xp[t * n + i]);
          break;
        case PoolMode::cls:
          std::copy(xp + begin * n, xp + (begin + 1) * n, os);
          break;
        case PoolMode::last:
          std::copy(xp + (end - 1) * n, xp + end * n, os);
          break;
      }
      if (!normalize) continue;
      double ss = 0.0;
      for (int64_t i = 0; i < n; ++i) ss += double(os[i]) * os[i];
      const double inv = 1.0 / std::max(std::sqrt(ss), 1e-12);
      for (int64_t i = 0; i < n; ++i) os[i] = float(os[i] * inv);
    }
  });
}

}  // namespace wick::cpu
