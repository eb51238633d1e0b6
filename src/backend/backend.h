// The op interface every backend implements. Ops know nothing of Qwen2: each takes tensors and a
// small parameter struct and writes a caller-allocated output. The CPU backend is the reference;
// every op of a faster backend is tested against its CPU twin.
#pragma once

#include <memory>
#include <string>

#include "wick/tensor.h"

namespace wick {

struct LinearParams {
  float alpha = 1.0f;  // out = alpha * x·Wᵀ + beta * out (+ bias)
  float beta = 0.0f;   // 1 accumulates into out (the LoRA path)
};

struct AttentionParams {
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;  // grouped-query attention: num_heads / num_kv_heads query heads share one kv head
  int64_t head_dim = 0;
  int64_t past = 0;  // cached positions before the first query; query i sees keys [0, past + i]
  float scale = 1.0f;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;
  virtual std::string name() const = 0;
  /// The dtype this backend keeps weights and activations in (f32 on the CPU).
  virtual DType compute_dtype() const = 0;

  /// Uninitialised device storage.
  virtual Tensor alloc(const Shape& shape, DType dtype) = 0;
  /// A device copy of a CPU tensor, converted to `dtype`.
  virtual Tensor upload(const Tensor& host, DType dtype) = 0;
  /// A CPU f32 copy of a device tensor.
  virtual Tensor download(const Tensor& device_tensor) = 0;

  /// out[t, :] = table[ids[t], :].  table [vocab, hidden], ids i32 [tokens], out [tokens, hidden].
  virtual void embedding(const Tensor& table, const Tensor& ids, Tensor& out) = 0;
  /// out = x / sqrt(mean(x²) + eps) * weight, per row.  x, out [rows, n]; weight [n].
  virtual void rmsnorm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) = 0;
  /// out = alpha · x·Wᵀ + beta · out + bias.  x [rows, in]; w [out, in]; bias [out] or undefined; out [rows, out].
  virtual void linear(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& out, LinearParams p = {}) = 0;
  /// Rotates pairs (i, i + d/2) of each head by position·θ^(-2i/d) in place (Qwen2 / NeoX layout).
  /// x [tokens, heads, head_dim]; positions i32 [tokens].
  virtual void rope(Tensor& x, const Tensor& positions, double theta) = 0;
  /// dst[row0 + i, :] = src[i, :].  src [n, ...], dst [capacity, ...] of the same row size.
  virtual void copy_rows(const Tensor& src, Tensor& dst, int64_t row0) = 0;
  /// Causal softmax(q·kᵀ·scale)·v for one sequence.  q [n, heads, d]; k, v [≥ past + n, kv_heads, d]
  /// (rows past + n and beyond are ignored); out [n, heads · d].
  virtual void attention(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& out, const AttentionParams& p) = 0;
  /// out = silu(gate) ⊙ up.  All [rows, n].
  virtual void swiglu(const Tensor& gate, const Tensor& up, Tensor& out) = 0;
  /// out = a + b (elementwise; out may alias a or b).
  virtual void add(const Tensor& a, const Tensor& b, Tensor& out) = 0;
};

/// The CPU reference backend (f32, OpenBLAS GEMM, wick thread pool).
std::unique_ptr<Backend> make_cpu_backend();
/// The backend for `device`; unsupported when this build lacks it.
std::unique_ptr<Backend> make_backend(Device device);

}  // namespace wick
