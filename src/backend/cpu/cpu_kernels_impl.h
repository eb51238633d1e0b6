// What the dispatcher (cpu_kernels.cpp) and the per-instruction-set files (cpu_kernels_<isa>.cpp, each compiled with
// its own -m flags) share: a block of gemm work and each path's table of block functions. Plain C types only: an
// inline function or template instantiated in an ISA file could be linked into the portable code (one copy wins),
// so those files keep theirs in anonymous namespaces and include nothing of wick's but this (and wick/quant.h, for
// the Q8Block type alone).
#pragma once

#include <cstdint>

#include "wick/quant.h"

namespace wick::cpu {

/// k per block of a gemm: a 4 × 4 tile's x and w rows (8 rows of 2048 bf16: 32 KB) stay in the 48 KB L1 while the
/// tile runs, and a block's w rows in L2. Blocks are balanced so the last one is not a sliver (cpu_gemm_tile_impl.h's
/// k_block). (Not tuned: the Qwen2.5 shapes measured have in ≤ 4864, at most 3 blocks.)
inline constexpr int64_t kMaxKBlock = 2048;
/// w rows of one many-row work item (cpu_kernels.cpp's split).
inline constexpr int64_t kGemmBlockOuts = 64;
/// Floats of GemmBlock::panel: a work item's w rows for one k block, dequantised.
inline constexpr int64_t kPanelFloats = kGemmBlockOuts * kMaxKBlock;

/// out[r, j] = alpha · Σ_i x[r, i] · w[j, i] + beta · out[r, j] for r ∈ [r0, r1), j ∈ [j0, j1).
/// x [rows, in] (f32, or bf16 bits for the bf16-x kernel), w [outs, in] (f32, bf16 or f16 bits, or q8_0: ⌈in / 32⌉
/// Q8Blocks a row), out [rows, outs].
struct GemmBlock {
  const void* x;
  const void* w;
  float* out;
  int64_t in, outs;
  int64_t r0, r1, j0, j1;
  float alpha, beta;
  float* panel;  // kPanelFloats of scratch for a kernel that widens w first (IsaKernels::gemm_q8w_widens), else null
};

using BlockFn = void (*)(const GemmBlock&);

/// One query against a run of n keys or values, rows `stride` floats apart (a KV cache's rows of one head):
/// attention_scores writes scores[j] = scale · q·k_j; attention_values adds Σ_j p[j] · v_j into out[0, d).
struct AttentionRun {
  const float* q;
  const float* k;
  const float* v;
  const float* p;
  float* scores;
  float* out;
  int64_t stride, n, d;
  float scale;
};

using RunFn = void (*)(const AttentionRun&);

/// One path's kernels; a null entry means the path has none (the dispatcher then uses another).
struct IsaKernels {
  BlockFn gemv_f32w;   // one x row (r1 = r0 + 1), f32 x, f32 w
  BlockFn gemv_bf16w;  // one x row, f32 x, bf16 w widened to f32
  BlockFn gemm_f32w;   // any rows, f32 x, f32 w
  BlockFn gemm_bf16w;  // any rows, f32 x, bf16 w widened to f32
  BlockFn gemv_f16w;   // one x row, f32 x, f16 w widened to f32
  BlockFn gemm_f16w;   // any rows, f32 x, f16 w widened to f32
  BlockFn gemv_q8w;    // one x row, f32 x, q8_0 w dequantised to f32
  BlockFn gemm_q8w;    // any rows, f32 x, q8_0 w dequantised to f32
  bool gemm_q8w_widens;  // gemm_q8w dequantises a block's w rows into GemmBlock::panel first
  BlockFn gemv_bf16;   // one x row, bf16 x, bf16 w (vdpbf16ps)
  BlockFn gemm_bf16;   // any rows, bf16 x, bf16 w (vdpbf16ps)
  void (*to_bf16)(const float* src, uint16_t* dst, int64_t n);  // round to nearest even, for gemm_bf16's x
  RunFn attention_scores;
  RunFn attention_values;
  float (*softmax_exp)(float* s, int64_t n);  // s[j] = exp(s[j] − max s); returns Σ s[j]
  void (*silu_mul)(const float* gate, const float* up, float* out, int64_t n);
};

// Defined by the ISA files; all entries null where the compiler or target cannot build them.
extern const IsaKernels kAvx2Kernels;
extern const IsaKernels kAvx512Kernels;
extern const IsaKernels kAvx512Bf16Kernels;

}  // namespace wick::cpu
