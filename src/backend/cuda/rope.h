// Rotary position embedding kernels (rope.cu): NeoX layout, pairs (i, i + d/2) of each head rotated by
// position · θ^(-2i/d), the angle in f32 as transformers computes it. bf16 in memory.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace wick::cuda {

/// In place: x [tokens, heads, d] at positions pos [tokens] (i32, on the device).
void rope(void* x, const int32_t* pos, int64_t tokens, int64_t heads, int64_t d, double theta, cudaStream_t stream);

/// The attention prologue of one sequence (or of a batch over a paged pool): RoPE on q and k in place, then k and v
/// written into the caches.
struct RopeKvParams {
  void* q = nullptr;                   // [tokens, heads, d]
  void* k = nullptr;                   // [tokens, kv_heads, d]
  const void* v = nullptr;             // [tokens, kv_heads, d]
  const int32_t* positions = nullptr;  // [tokens] on the device: each token's angle and cache row
  const int32_t* rows = nullptr;       // [tokens] on the device: each token's cache row instead (a paged pool)
  const void* q_bias = nullptr;        // [heads·d], or null: added to q, k and v first (all three or none)
  const void* k_bias = nullptr;        // [kv_heads·d]
  const void* v_bias = nullptr;        // [kv_heads·d]
  void* k_cache = nullptr;             // [capacity, kv_heads, d]
  void* v_cache = nullptr;             // [capacity, kv_heads, d]
  int64_t tokens = 0, heads = 0, kv_heads = 0, head_dim = 0;
  double theta = 0.0;  // RoPE base
};
void rope_kv(const RopeKvParams& p, cudaStream_t stream);

}  // namespace wick::cuda
