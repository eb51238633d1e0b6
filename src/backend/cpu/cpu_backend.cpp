// CPU reference backend: f32 activations and sums, weight matrices in f32, kept in the file's bf16 or f16 or quantised
// to q8_0; wick's kernels for the products with weights (cpu_kernels.h), OpenBLAS for the training ops' other products
// (cpu_backward.cpp); wick's thread pool across rows and heads.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/cpu_backward.h"
#include "backend/cpu/cpu_encoder.h"
#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/cpu_weights.h"
#include "core/thread_pool.h"
#include "wick/error.h"

namespace wick {

namespace {

using cpu::expect;
using cpu::kAttentionGrainWork;
using cpu::kElementGrain;
using cpu::kRowGrain;
using cpu::kTokenGrain;
using cpu::row_size;

// rope (inverse false) and its transpose rope_backward (inverse true: each pair turned by −angle).
void rotate_pairs(Tensor& x, const Tensor& positions, double theta, bool inverse, const char* op) {
  const int64_t n = x.dim(0), heads = x.dim(1), d = x.dim(2), half = d / 2;
  expect(positions.numel() == n, op, "positions do not match tokens");
  std::vector<float> inv_freq(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) inv_freq[size_t(i)] = float(1.0 / std::pow(theta, double(2 * i) / double(d)));
  const int32_t* pos = positions.data<int32_t>();
  float* xp = x.data<float>();
  parallel_for(n, kTokenGrain, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      for (int64_t i = 0; i < half; ++i) {
        // Angles in f32 as transformers computes them (position · inv_freq, then cos/sin).
        const float angle = float(pos[t]) * inv_freq[size_t(i)];
        const float c = std::cos(angle), s = inverse ? -std::sin(angle) : std::sin(angle);
        for (int64_t h = 0; h < heads; ++h) {
          float* v = xp + (t * heads + h) * d;
          const float a = v[i], b = v[i + half];
          v[i] = a * c - b * s;
          v[i + half] = b * c + a * s;
        }
      }
    }
  });
}

// Causal GQA attention: query i sees keys j ∈ [0, pos[i]], found in runs of consecutive rows of k and v (f32):
// key_run(i, j, visible) = {the row of key j, how many keys from j on are in the rows after it (≥ 1)}.
// q [n, heads, d]; k, v [rows, kv_heads, d]; out [n, heads · d]; ctx = max pos + 1.
template <class KeyRun>
void attend(const Tensor& q, const Tensor& k, const Tensor& v, const int32_t* pos, int64_t ctx, Tensor& out,
            const AttentionParams& p, const KeyRun& key_run) {
  const int64_t n = q.dim(0), heads = p.num_heads, d = p.head_dim, kvh = p.num_kv_heads, group = heads / kvh;
  const float* qp = q.data<float>();
  const float* kp = k.data<float>();
  const float* vp = v.data<float>();
  float* op = out.data<float>();
  // One work item per (query, head); small contexts are batched into larger chunks.
  const int64_t grain = std::max<int64_t>(1, kAttentionGrainWork / std::max<int64_t>(1, ctx * d));
  parallel_for(n * heads, grain, [&](int64_t w0, int64_t w1) {
    std::vector<float> probs(static_cast<size_t>(ctx));
    for (int64_t w = w0; w < w1; ++w) {
      const int64_t i = w / heads, h = w % heads;
      const float* qi = qp + (i * heads + h) * d;
      const int64_t kv = h / group, visible = int64_t(pos[i]) + 1;
      for (int64_t j = 0; j < visible;) {
        const auto [row, count] = key_run(i, j, visible);
        cpu::attention_scores(qi, kp + (row * kvh + kv) * d, kvh * d, count, d, p.scale, probs.data() + j);
        j += count;
      }
      const float inv = 1.0f / cpu::softmax_exp(probs.data(), visible);
      for (int64_t j = 0; j < visible; ++j) probs[size_t(j)] *= inv;
      float* oi = op + (i * heads + h) * d;
      std::fill(oi, oi + d, 0.0f);
      for (int64_t j = 0; j < visible;) {
        const auto [row, count] = key_run(i, j, visible);
        cpu::attention_values(probs.data() + j, vp + (row * kvh + kv) * d, kvh * d, count, d, oi);
        j += count;
      }
    }
  });
}

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(CpuWeights weights) : weights_(weights) {}
  Device device() const override { return Device::cpu; }
  std::string name() const override { return "cpu"; }
  DType compute_dtype() const override { return DType::f32; }

  Tensor alloc(const Shape& shape, DType dtype) override { return Tensor::empty(shape, dtype); }
  Tensor upload(const Tensor& host, DType dtype) override { return host.to(dtype); }
  // bf16 and f16 weights stay where they are (a view of the file's read-only mapping, or the loader's copy of a tensor
  // the file leaves unaligned); the ops widen them as they go. int8: quantised here, once (a q8_0 weight, e.g. a
  // merged one, is kept as it is).
  Tensor upload_weight(const Tensor& host) override {
    if (weights_ == CpuWeights::int8) return host.dtype() == DType::q8_0 ? host : cpu::quantize_weight(host);
    if (weights_ == CpuWeights::native && (host.dtype() == DType::bf16 || host.dtype() == DType::f16)) return host;
    return host.to(DType::f32);
  }
  Tensor download(const Tensor& t) override { return t.to(DType::f32); }
  void write(Tensor& dst, const void* host, size_t bytes) override {
    expect(bytes <= dst.nbytes(), "write", std::to_string(bytes) + " bytes into " + to_string(dst.shape()));
    std::memcpy(dst.raw(), host, bytes);
  }

  void embedding(const Tensor& table, const Tensor& ids, Tensor& out) override {
    const int64_t vocab = table.dim(0), hidden = table.dim(1), n = ids.numel();
    expect(out.dim(0) == n && out.dim(1) == hidden, "embedding", "output shape " + to_string(out.shape()));
    const int32_t* id = ids.data<int32_t>();
    for (int64_t t = 0; t < n; ++t)
      if (id[t] < 0 || id[t] >= vocab)
        fail(ErrorKind::bad_input, "token id " + std::to_string(id[t]) + " is outside the vocabulary [0, " +
                                       std::to_string(vocab) + ")");
    const auto* src = static_cast<const std::byte*>(table.raw());
    const size_t row_bytes = vocab ? table.nbytes() / size_t(vocab) : 0;  // a row in f32, bf16, f16 or q8_0 blocks
    float* dst = out.data<float>();
    for (int64_t t = 0; t < n; ++t)
      convert_to_f32(src + size_t(id[t]) * row_bytes, table.dtype(), dst + t * hidden, size_t(hidden));
  }

  void rmsnorm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) override {
    const int64_t rows = x.dim(0), n = row_size(x);
    expect(weight.numel() == n && out.numel() == x.numel(), "rmsnorm", "shape mismatch");
    const float* xp = x.data<float>();
    const float* w = weight.data<float>();
    float* o = out.data<float>();
    parallel_for(rows, kRowGrain, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const float* xr = xp + r * n;
        double ss = 0.0;
        for (int64_t i = 0; i < n; ++i) ss += double(xr[i]) * xr[i];
        const float inv = float(1.0 / std::sqrt(ss / double(n) + double(eps)));
        float* orow = o + r * n;
        for (int64_t i = 0; i < n; ++i) orow[i] = w[i] * (xr[i] * inv);
      }
    });
  }

  void add_rmsnorm(Tensor& x, const Tensor& delta, const Tensor& weight, float eps, Tensor& normed) override {
    add(x, delta, x);
    rmsnorm(x, weight, eps, normed);
  }

  void rope_kv(Tensor& q, Tensor& k, const Tensor& v, const Tensor& positions, double theta, Tensor& k_cache,
               Tensor& v_cache, const Tensor& rows, const QkvBias& bias) override {
    const Tensor& at = rows.defined() ? rows : positions;
    if (bias.defined()) {
      add_row_bias(q, bias.q);
      add_row_bias(k, bias.k);
    }
    rope(q, positions, theta);
    rope(k, positions, theta);
    scatter_rows(k, k_cache, at);
    scatter_rows(v, v_cache, at);
    if (!bias.defined()) return;
    const int64_t row = row_size(v_cache);
    expect(bias.v.numel() == row, "rope_kv", "v bias shape " + to_string(bias.v.shape()));
    for (int64_t i = 0; i < at.numel(); ++i)
      for (int64_t j = 0; j < row; ++j) v_cache.data<float>()[at.data<int32_t>()[i] * row + j] += bias.v.data<float>()[j];
  }

  // x[r, :] += bias for every row (linear's bias add).
  static void add_row_bias(Tensor& x, const Tensor& bias) {
    const int64_t rows = x.dim(0), n = row_size(x);
    expect(bias.numel() == n, "rope_kv", "bias shape " + to_string(bias.shape()) + " for rows of " + std::to_string(n));
    float* o = x.data<float>();
    const float* b = bias.data<float>();
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < n; ++j) o[r * n + j] += b[j];
  }

  void zero(Tensor& t) override { std::memset(t.raw(), 0, t.nbytes()); }

  void linear(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& out, LinearParams p) override {
    const int64_t rows = x.dim(0), in = row_size(x), outs = w.dim(0);
    expect(w.dim(1) == in, "linear", "x " + to_string(x.shape()) + " vs w " + to_string(w.shape()));
    expect(out.dim(0) == rows && row_size(out) == outs, "linear", "output shape " + to_string(out.shape()));
    if (rows == 0) return;
    float* o = out.data<float>();
    // wick's kernels (cpu_kernels.h): a row's result never depends on the rows beside it, so a batch decodes each
    // sequence exactly as it would decode alone.
    const cpu::GemmShape shape{.rows = rows, .in = in, .outs = outs};
    if (w.dtype() == DType::bf16) cpu::gemm_bf16(x.data<float>(), w.data<uint16_t>(), o, shape, p);
    else if (w.dtype() == DType::f16) cpu::gemm_f16(x.data<float>(), w.data<uint16_t>(), o, shape, p);
    else if (w.dtype() == DType::q8_0) cpu::gemm_q8(x.data<float>(), w.data<Q8Block>(), o, shape, p);
    else cpu::gemm_f32(x.data<float>(), w.data<float>(), o, shape, p);
    if (bias.defined()) {
      expect(bias.numel() == outs, "linear", "bias shape " + to_string(bias.shape()));
      const float* b = bias.data<float>();
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < outs; ++j) o[r * outs + j] += b[j];
    }
  }

  void rope(Tensor& x, const Tensor& positions, double theta) override {
    rotate_pairs(x, positions, theta, /*inverse=*/false, "rope");
  }

  void copy_rows(const Tensor& src, Tensor& dst, int64_t row0) override {
    const int64_t n = src.dim(0), row = row_size(src);
    expect(row == row_size(dst) && row0 >= 0 && row0 + n <= dst.dim(0), "copy_rows",
           "src " + to_string(src.shape()) + " into dst " + to_string(dst.shape()) + " at row " + std::to_string(row0));
    std::memcpy(dst.data<float>() + row0 * row, src.data<float>(), size_t(n * row) * sizeof(float));
  }

  void scatter_rows(const Tensor& src, Tensor& dst, const Tensor& rows) override {
    const int64_t n = src.dim(0), row = row_size(src);
    expect(row == row_size(dst) && rows.numel() == n, "scatter_rows",
           "src " + to_string(src.shape()) + " into dst " + to_string(dst.shape()));
    const int32_t* r = rows.data<int32_t>();
    for (int64_t i = 0; i < n; ++i) {
      expect(r[i] >= 0 && r[i] < dst.dim(0), "scatter_rows", "row " + std::to_string(r[i]) + " out of range");
      std::memcpy(dst.data<float>() + r[i] * row, src.data<float>() + i * row, size_t(row) * sizeof(float));
    }
  }

  void attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& positions, Tensor& out,
                 const AttentionParams& p) override {
    const int64_t n = q.dim(0);
    const int32_t* pos = positions.data<int32_t>();
    int64_t ctx = 0;
    for (int64_t i = 0; i < n; ++i) ctx = std::max<int64_t>(ctx, pos[i] + 1);
    expect(q.numel() == n * p.num_heads * p.head_dim && positions.numel() == n && k.dim(0) >= ctx &&
               row_size(k) == p.num_kv_heads * p.head_dim && out.numel() == n * p.num_heads * p.head_dim,
           "attention", "shapes q " + to_string(q.shape()) + " k " + to_string(k.shape()));
    attend(q, k, v, pos, ctx, out, p,
           [](int64_t, int64_t j, int64_t visible) { return std::pair<int64_t, int64_t>(j, visible - j); });
  }

  void paged_attention(const Tensor& q, const Tensor& k, const Tensor& v, const PagedKeys& keys, Tensor& out,
                       const AttentionParams& p) override {
    const char* op = "paged_attention";
    const int64_t n = q.dim(0), m = keys.tables.numel(), bs = keys.block_size;
    expect(q.numel() == n * p.num_heads * p.head_dim && keys.positions.numel() == n && keys.starts.numel() == n &&
               row_size(k) == p.num_kv_heads * p.head_dim && v.shape() == k.shape() && bs >= 1 &&
               out.numel() == n * p.num_heads * p.head_dim,
           op, "shapes q " + to_string(q.shape()) + " k " + to_string(k.shape()));
    const int32_t *pos = keys.positions.data<int32_t>(), *start = keys.starts.data<int32_t>();
    const int32_t* tables = keys.tables.data<int32_t>();
    int64_t ctx = 0;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t last = pos[i] < 0 ? -1 : int64_t(start[i]) + pos[i] / bs;  // the last block query i reads
      expect(pos[i] >= 0 && start[i] >= 0 && last < m, op,
             "query " + std::to_string(i) + " at position " + std::to_string(pos[i]) + " reads block-table entry " +
                 std::to_string(last) + " of " + std::to_string(m));
      for (int64_t e = start[i]; e <= last; ++e)
        expect(tables[e] >= 0 && (int64_t(tables[e]) + 1) * bs <= k.dim(0), op,
               "block " + std::to_string(tables[e]) + " outside the pool of " + std::to_string(k.dim(0) / bs));
      ctx = std::max<int64_t>(ctx, pos[i] + 1);
    }
    attend(q, k, v, pos, ctx, out, p, [&](int64_t i, int64_t j, int64_t visible) {
      return std::pair<int64_t, int64_t>(int64_t(tables[start[i] + j / bs]) * bs + j % bs,
                                         std::min(bs - j % bs, visible - j));
    });
  }

  void lora_rows(const Tensor& x, const Tensor& row_tables, int64_t slot, int32_t max_rank, Tensor& out) override {
    const int64_t n = x.dim(0), in = x.dim(1), outs = out.dim(1);
    expect(out.dim(0) == n && row_tables.numel() == 2 * n && row_tables.dtype() == DType::i32 && slot >= 0,
           "lora_rows", "x " + to_string(x.shape()) + " out " + to_string(out.shape()) + " tables " +
                            to_string(row_tables.shape()));
    parallel_for(n, 1, [&](int64_t t0, int64_t t1) {
      std::vector<float> low(static_cast<size_t>(std::max(max_rank, 1)));
      for (int64_t t = t0; t < t1; ++t) {
        uintptr_t address = 0;
        std::memcpy(&address, row_tables.data<int32_t>() + 2 * t, sizeof(address));
        if (address == 0) continue;
        const LoraEntry& e = reinterpret_cast<const LoraEntry*>(address)[slot];
        expect(e.rank <= max_rank, "lora_rows", "rank " + std::to_string(e.rank) + " above max_rank " +
                                                    std::to_string(max_rank));
        const float *a = static_cast<const float*>(e.a), *b = static_cast<const float*>(e.b);
        const float* xt = x.data<float>() + t * in;
        for (int32_t r = 0; r < e.rank; ++r) {
          float sum = 0.0f;
          for (int64_t i = 0; i < in; ++i) sum += xt[i] * a[r * in + i];
          low[size_t(r)] = sum;
        }
        float* ot = out.data<float>() + t * outs;
        for (int64_t o = 0; o < outs; ++o) {
          float sum = 0.0f;
          for (int32_t r = 0; r < e.rank; ++r) sum += b[o * e.rank + r] * low[size_t(r)];
          ot[o] += e.scale * sum;
        }
      }
    });
  }

  void swiglu(const Tensor& gate, const Tensor& up, Tensor& out) override {
    const int64_t n = gate.numel();
    expect(up.numel() == n && out.numel() == n, "swiglu", "shape mismatch");
    const float* g = gate.data<float>();
    const float* u = up.data<float>();
    float* o = out.data<float>();
    parallel_for(n, kElementGrain, [&](int64_t i0, int64_t i1) { cpu::silu_mul(g + i0, u + i0, o + i0, i1 - i0); });
  }

  void add(const Tensor& a, const Tensor& b, Tensor& out) override {
    const int64_t n = a.numel();
    expect(b.numel() == n && out.numel() == n, "add", "shape mismatch");
    const float* ap = a.data<float>();
    const float* bp = b.data<float>();
    float* o = out.data<float>();
    parallel_for(n, kElementGrain, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) o[i] = ap[i] + bp[i];
    });
  }

  // Encoder ops: cpu_encoder.cpp.
  void layer_norm(const Tensor& x, const Tensor& residual, const Tensor& weight, const Tensor& bias, float eps,
                  Tensor& out) override {
    cpu::layer_norm(x, residual, weight, bias, eps, out);
  }
  void gelu(const Tensor& x, bool tanh, Tensor& out) override { cpu::gelu(x, tanh, out); }
  void encoder_attention(const Tensor& q, const Tensor& k, const Tensor& v, const EncoderSpans& spans,
                         const RelativeBias& bias, Tensor& out, const AttentionParams& p) override {
    cpu::encoder_attention(q, k, v, spans, bias, out, p);
  }
  void encoder_pool(const Tensor& x, const Tensor& spans, PoolMode mode, bool normalize, Tensor& out) override {
    cpu::encoder_pool(x, spans, mode, normalize, out);
  }

  // Backward twins (training): cpu_backward.cpp.
  void matmul(const Tensor& a, const Tensor& b, Tensor& out, const MatmulParams& p) override {
    if (cpu::is_narrow(b)) cpu::matmul_narrow_b(a, b, out, p);
    else cpu::matmul(a, b, out, p);
  }
  void rmsnorm_backward(const Tensor& x, const Tensor& weight, float eps, const Tensor& d_out, Tensor& dx) override {
    cpu::rmsnorm_backward(x, weight, eps, d_out, dx);
  }
  void rope_backward(Tensor& dx, const Tensor& positions, double theta) override {
    rotate_pairs(dx, positions, theta, /*inverse=*/true, "rope_backward");
  }
  void swiglu_backward(const Tensor& gate, const Tensor& up, const Tensor& d_out, Tensor& d_gate,
                       Tensor& d_up) override {
    cpu::swiglu_backward(gate, up, d_out, d_gate, d_up);
  }
  void attention_backward(const AttentionInputs& in, const Tensor& d_out, AttentionGrads grads,
                          const AttentionParams& p) override {
    cpu::attention_backward(in, d_out, std::move(grads), p);
  }
  double cross_entropy(const Tensor& logits, const Tensor& targets, float scale, Tensor& d_logits) override {
    return cpu::cross_entropy(logits, targets, scale, d_logits);
  }
  void embedding_backward(const Tensor& ids, const Tensor& d_out, Tensor& d_table) override {
    cpu::embedding_backward(ids, d_out, d_table);
  }
  void dropout(const Tensor& x, float p, uint64_t seed, Tensor& out) override { cpu::dropout(x, p, seed, out); }

 private:
  CpuWeights weights_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(CpuWeights weights) { return std::make_unique<CpuBackend>(weights); }

}  // namespace wick
