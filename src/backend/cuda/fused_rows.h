// Launchers of the fused few-row kernels (fused_rows.cu): the projections of up to kMaxRows token rows — a decode
// step of that many sequences — as one pass over the weights on the tensor cores, with the epilogues of the one-token
// kernels (fused_gemv.h): bias, RoPE and the write of k and v into a pool's rows; SwiGLU; the residual add; f32
// logits, and the RMSNorm before the projection where one is given. All bf16 in memory, f32 accumulation;
// pointers are device pointers.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace wick::cuda {

namespace fused_rows {

/// The most token rows one launch takes.
constexpr int kMaxRows = 32;
/// The input width the kernels step by: k must be a multiple of it.
constexpr int kBlockK = 32;

}  // namespace fused_rows

/// The input rows of a launch.
struct FusedRowsInput {
  const void* x = nullptr;  // [rows, k] bf16, rows 16-byte aligned
  const void* norm = nullptr;  // RMSNorm weight [k] bf16, 16-byte aligned, or null: x is used as it is
  float eps = 0.0f;
  int64_t rows = 0;         // 1 ..= kMaxRows
  int64_t k = 0;            // a multiple of kBlockK
  /// Launched chained (chain.cuh): it may start while the kernel ahead of it runs.
  bool chained = true;
};

/// The q/k/v projections of fused_rows_attention_inputs and where their outputs go.
struct RowsQkv {
  const void* w[3] = {};     // q [heads·d, k]; k and v [kv_heads·d, k]; bf16
  const void* bias[3] = {};  // [rows of w[i]] bf16, or null (all three or none)
  int64_t heads = 0, kv_heads = 0, head_dim = 0;  // head_dim a multiple of 16
  const int32_t* positions = nullptr;  // [rows]: each row's rotation
  const int32_t* slots = nullptr;      // [rows]: the pool row each row's k and v go to
  double theta = 0.0;                  // RoPE base
  void* q = nullptr;                   // [rows, heads·d] bf16, rotated
  void* k_pool = nullptr;              // [pool rows, kv_heads, d] bf16
  void* v_pool = nullptr;
};

/// For s in {q, k, v} and every row: w[s]·x + bias[s]; q and k rotated (NeoX pairs (i, i + d/2)); q into p.q, k and v
/// into the pool at the row's slot.
void fused_rows_attention_inputs(const FusedRowsInput& in, const RowsQkv& p, cudaStream_t stream);
/// h[t][r] = silu(w_gate[r]·x[t]) · (w_up[r]·x[t]) for r < ffn.
void fused_rows_gate_up(const FusedRowsInput& in, const void* w_gate, const void* w_up, int64_t ffn, void* h,
                        cudaStream_t stream);
/// x_out[t][r] += w[r]·x[t] for r < rows of w (bf16 residual stream [rows, out_rows]).
void fused_rows_residual(const FusedRowsInput& in, const void* w, int64_t out_rows, void* residual,
                         cudaStream_t stream);
/// out[t][r] = w[r]·x[t], f32 [rows, out_rows].
void fused_rows_f32(const FusedRowsInput& in, const void* w, int64_t out_rows, float* out,
                    cudaStream_t stream);

}  // namespace wick::cuda
