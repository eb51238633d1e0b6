// Launchers of the fused one-token decode kernels (backend.h's FusedDecode): one bandwidth-bound pass over a
// projection's weights with the RMSNorm before it, the bias, RoPE and KV-cache write, SwiGLU or residual add
// after it, and the LoRA shrink/expand of the adapter in effect, read from device memory.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>

#include "backend/backend.h"

namespace wick::cuda {

/// The input row of a fused GEMV and what comes before the product.
struct GemvInput {
  const void* x = nullptr;     // [k] bf16
  int64_t k = 0;               // a multiple of 8
  const void* norm = nullptr;  // rmsnorm weight [k] bf16, or null for none
  float eps = 0.0f;
  DecodeLora lora;  // entries for this launch's projections (consecutive), or all null
  /// Launched chained (chain.cuh): it may start while the kernel ahead of it runs. Not for the first launch after
  /// the step's first kernel, which writes the adapter table that chained launches read before their wait.
  bool chained = true;
};

/// For s in {q, k, v}: rows of w[s] ([rows_s, k]) plus bias[s] (may be null); q and k rotated (NeoX pairs
/// (i, i + d/2) per head, position *pos); q into q_out [heads·d]; k, v into the caches at row *pos.
void gemv_attention_inputs(const GemvInput& in, const void* const (&w)[3], const void* const (&bias)[3], int64_t heads,
                           int64_t kv_heads, int64_t d, const int32_t* pos, double theta, void* q_out, void* k_cache,
                           void* v_cache, cudaStream_t stream);
/// h[r] = silu(w_gate[r]·n) · (w_up[r]·n) for r < rows (n the normed input).
void gemv_gate_up(const GemvInput& in, const void* w_gate, const void* w_up, int64_t rows, void* h, cudaStream_t stream);
/// x[r] += w[r]·in for r < rows (bf16 x).
void gemv_residual(const GemvInput& in, const void* w, int64_t rows, void* x, cudaStream_t stream);
/// out[r] = w[r]·n for r < rows, f32 out.
void gemv_f32(const GemvInput& in, const void* w, int64_t rows, float* out, cudaStream_t stream);

}  // namespace wick::cuda

namespace wick {
/// backend.h's FusedDecode on `stream`, validating shapes and dtypes and launching the kernels above.
std::unique_ptr<FusedDecode> make_cuda_fused_decode(cudaStream_t stream);
}  // namespace wick
