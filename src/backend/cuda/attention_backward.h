// attention's backward for one sequence on the device (attention_backward.cu): causal grouped-query attention,
// query i sees keys [0, positions[i]]; the softmax is recomputed, not saved by the forward.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace wick::cuda {

struct AttentionBackwardParams {
  const void* q = nullptr;             // [queries, heads, head_dim]
  const void* k = nullptr;             // [capacity, kv_heads, head_dim]
  const void* v = nullptr;             // [capacity, kv_heads, head_dim]
  const void* d_out = nullptr;         // [queries, heads · head_dim]
  const int32_t* positions = nullptr;  // [queries], each in [0, capacity) (callers validate; others are clamped)
  void* dq = nullptr;                  // [queries, heads, head_dim], written
  void* dk = nullptr;                  // [capacity, kv_heads, head_dim], accumulated; rows no query sees untouched
  void* dv = nullptr;                  // [capacity, kv_heads, head_dim], accumulated; rows no query sees untouched
  float* stats = nullptr;              // scratch [2, queries, heads]: each query head's log Σ exp and dO·O
  int64_t queries = 0, heads = 0, kv_heads = 0, head_dim = 0, capacity = 0;
  float scale = 1.0f;
  bool f32 = false;  // every tensor but positions and stats f32, else bf16
};

/// The largest head_dim the kernels take (a warp holds a head vector in registers, 8 elements a lane).
constexpr int64_t kMaxBackwardHeadDim = 256;

/// dq written, dk and dv accumulated: the gradients of Σ d_out ⊙ attention(q, k, v); no output may alias an input.
/// Returns false (and queues nothing) when head_dim is above kMaxBackwardHeadDim.
bool attention_backward(const AttentionBackwardParams& p, cudaStream_t stream);

}  // namespace wick::cuda
