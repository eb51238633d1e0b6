// Causal grouped-query attention for one sequence on the device (bf16 in memory, f32 arithmetic). attention.cu picks
// the kernel by the number of queries: split-K flash decoding for a few (attention_decode.cu), tensor-core flash
// attention for more (attention_prefill.cu).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace wick::cuda {

struct AttentionShape {
  int64_t queries = 0;  // n new tokens
  int64_t heads = 0, kv_heads = 0, head_dim = 0;
  int64_t capacity = 0;  // rows of the k and v caches (no query sees past them); paged: the most keys a query sees
  // Paged (tables set): query i's key j is row tables[starts[i] + j / block_size] · block_size + j % block_size
  // of k and v, not row j.
  const int32_t* tables = nullptr;
  const int32_t* starts = nullptr;
  int block_size = 1;
  float scale = 1.0f;
  // Device scratch owned by the backend for the split-K partials, fixed for its lifetime (graphs bake in the
  // address) and zero-filled once by its owner: the kernels leave their counters in it at zero.
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

/// Causal GQA attention for one sequence: query i sees keys [0, positions[i]] (read on the device, so a captured
/// graph serves every step).  q [n, heads, d]; k, v [capacity, kv_heads, d], 16-byte aligned; out [n, heads·d];
/// bf16. Returns false when head_dim is not one the kernels are built for (attention_common.cuh's with_head_dim).
bool attention(const void* q, const void* k, const void* v, const int32_t* positions, void* out,
               const AttentionShape& s, cudaStream_t stream);

}  // namespace wick::cuda
