// Launchers of the fused one-token GEMV kernels (fused_gemv_kernel.cuh; plans in fused_gemv.cu): one
// bandwidth-bound pass over a projection's weights with the RMSNorm before it, and after it the bias, RoPE and
// KV-cache write, SwiGLU or residual add, plus the LoRA shrink/expand of the adapter in effect, read from device
// memory. All bf16 in memory, f32 arithmetic; pointers are device pointers.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backend/backend.h"

namespace wick::cuda {

namespace fused_gemv {

/// The most projections one launch covers (q, k and v), each with its LoraEntry.
constexpr int kMaxProjections = 3;
/// The largest adapter rank the LoRA builds take (FusedDecode::max_lora_rank); also the stride of `t` below.
constexpr int kMaxRank = 64;
/// A published LoRA shrink value of t = A·n: the step's epoch in the high half, the f32 bits in the low.
using Slot = unsigned long long;
/// Device scratch one launch with LoRA publishes its t values into: kMaxProjections · kMaxRank slots, rounded up.
constexpr int64_t kScratchBytes = 2048;

}  // namespace fused_gemv

/// The input row of a fused GEMV and what comes before the product.
struct FusedGemvInput {
  const void* x = nullptr;     // [k] bf16, 16-byte aligned
  int64_t k = 0;               // a multiple of 8
  const void* norm = nullptr;  // RMSNorm weight [k] bf16, or null: x is used as it is
  float eps = 0.0f;
  DecodeLora lora;  // entries for this launch's projections (consecutive), or all null
  /// Launched chained (chain.cuh): it may start while the kernel ahead of it runs. Not for the first launch after
  /// the step's first kernel, which writes the adapter table that chained launches read before their wait.
  bool chained = true;
};

/// The q/k/v projections of gemv_attention_inputs and where their outputs go.
struct QkvGemv {
  const void* w[3] = {};               // q [heads·d, k]; k and v [kv_heads·d, k]; bf16
  const void* bias[3] = {};            // [rows of w[i]] bf16, or null
  int64_t heads = 0, kv_heads = 0, head_dim = 0;
  const int32_t* position = nullptr;   // [1]: the rotation's position, read on the device
  const int32_t* slot = nullptr;       // [1]: the cache row written (null: *position), read on the device
  double theta = 0.0;                  // RoPE base
  void* q = nullptr;                   // [heads·d] bf16, rotated
  void* k_cache = nullptr;             // [capacity, kv_heads, d] bf16: k, rotated, into row *slot
  void* v_cache = nullptr;             // [capacity, kv_heads, d] bf16: v into row *slot
};

/// For s in {q, k, v}: rows of p.w[s] times the (normed) input, plus p.bias[s]; q and k rotated (NeoX pairs
/// (i, i + d/2) per head); q into p.q, k and v into the caches.
void gemv_attention_inputs(const FusedGemvInput& in, const QkvGemv& p, cudaStream_t stream);
/// h[r] = silu(w_gate[r]·n) · (w_up[r]·n) for r < rows (n the normed input).
void gemv_gate_up(const FusedGemvInput& in, const void* w_gate, const void* w_up, int64_t rows, void* h,
                  cudaStream_t stream);
/// x[r] += w[r]·in for r < rows (bf16 x).
void gemv_residual(const FusedGemvInput& in, const void* w, int64_t rows, void* x, cudaStream_t stream);
/// out[r] = w[r]·n for r < rows, f32 out.
void gemv_f32(const FusedGemvInput& in, const void* w, int64_t rows, float* out, cudaStream_t stream);

}  // namespace wick::cuda
