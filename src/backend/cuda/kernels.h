// Launchers for wick's own CUDA kernels (bf16 storage, f32 math). All run on `stream`; pointers are device
// pointers. Shapes as in backend/backend.h.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace wick::cuda {

/// out[t, :] = table[ids[t], :].  table [vocab, hidden] bf16; ids i32 [n]; out [n, hidden] bf16.
void embedding(const void* table, const int32_t* ids, void* out, int64_t n, int64_t hidden, cudaStream_t stream);
/// Per row: out = x / sqrt(mean(x²) + eps) * weight.  x, out [rows, n] bf16; weight [n] bf16.
void rmsnorm(const void* x, const void* weight, void* out, int64_t rows, int64_t n, float eps, cudaStream_t stream);
/// In-place NeoX-style rotation of x [tokens, heads, d] bf16 at positions pos [tokens].
void rope(void* x, const int32_t* pos, int64_t tokens, int64_t heads, int64_t d, double theta, cudaStream_t stream);
/// out = silu(gate) ⊙ up, n elements bf16.
void swiglu(const void* gate, const void* up, void* out, int64_t n, cudaStream_t stream);
/// out = a + b, n elements bf16.
void add(const void* a, const void* b, void* out, int64_t n, cudaStream_t stream);
/// out[r, :] += bias, rows x n; out bf16 or f32 (out_f32), bias bf16.
void add_bias(void* out, bool out_f32, const void* bias, int64_t rows, int64_t n, cudaStream_t stream);

/// dst[rows[i], :] = src[i, :] for n rows of row_bytes bytes each.
void scatter_rows(const void* src, void* dst, const int32_t* rows, int64_t n, int64_t row_bytes, cudaStream_t stream);

struct AttentionShape {
  int64_t queries = 0;  // n new tokens
  int64_t heads = 0, kv_heads = 0, head_dim = 0;
  int64_t capacity = 0;  // rows of the k and v caches (no query sees past them)
  float scale = 1.0f;
  // Device scratch owned by the backend for the split-K partials, fixed for its lifetime (graphs bake in the
  // address) and zero-filled once by its owner: the kernels leave their counters in it at zero.
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};
/// Causal GQA attention for one sequence: query i sees keys [0, positions[i]] (read on the device, so a
/// captured graph serves every step).  q [n, heads, d]; k, v [capacity, kv_heads, d], 16-byte aligned;
/// out [n, heads·d]; bf16.  Up to 4 queries split the keys over blocks (using the workspace), more run the
/// tensor-core flash kernel (head_dim ≤ 128).  Returns false when head_dim is not one the kernels are built for.
bool attention(const void* q, const void* k, const void* v, const int32_t* positions, void* out,
               const AttentionShape& s, cudaStream_t stream);

}  // namespace wick::cuda

namespace wick::cuda {

/// out[n] = alpha · W[n, :]·x + beta · out[n] + bias[n] for one input row (decode): a warp per output row,
/// 16-byte loads. W [N, K] bf16 with K % 8 == 0; x [K] bf16; out bf16 or f32 (out_f32); bias bf16 or null.
void gemv(const void* w, const void* x, const void* bias, void* out, bool out_f32, int64_t n, int64_t k, float alpha,
          float beta, cudaStream_t stream);

/// RoPE on q [T, heads, d] and k [T, kv_heads, d] in place, then k and v [T, kv_heads, d] written into the
/// caches [capacity, kv_heads, d] at rows positions[t].
void rope_kv(void* q, void* k, const void* v, const int32_t* positions, void* k_cache, void* v_cache, int64_t tokens,
             int64_t heads, int64_t kv_heads, int64_t d, double theta, cudaStream_t stream);

/// x = embed[*id] ([hidden] bf16), and table_bytes (a multiple of 8) copied into `table` from the device
/// address stored at `source`.
void begin_step(const void* embed, const int32_t* id, void* x, int64_t hidden, const void* source, void* table,
                int64_t table_bytes, cudaStream_t stream);

/// Per row: x += delta; normed = x / sqrt(mean(x²) + eps) * weight.  x, delta, normed [rows, n] bf16.
void add_rmsnorm(void* x, const void* delta, const void* weight, void* normed, int64_t rows, int64_t n, float eps,
                 cudaStream_t stream);

/// Bytes of device workspace summarize() needs for a row of n logits and `count` best ids, or -1 where it cannot
/// run (n ≥ 2^24, count above 256, or more than 8192 candidates to merge: count · ⌈n / 4096⌉).
int64_t summary_workspace_bytes(int64_t n, int count);
/// The summary of logits [n] (wick/logit_summary.h) into out [2 + 2·count + gathered] f32: max, Σexp(l − max),
/// the best `count` ids (as floats, best first, ties to the lower id) and their logits, then logits[gather[i]].
void summarize(const float* logits, int64_t n, int count, const int32_t* gather, int64_t gathered, float* out,
               void* workspace, cudaStream_t stream);

}  // namespace wick::cuda
