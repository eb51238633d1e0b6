// The avx512 path (AVX-512 F/BW/VL/DQ + FMA; this file alone is compiled with those flags, see CMakeLists.txt):
// f32 x against f32, bf16, f16 or q8_0 w, 16 lanes. bf16 w is widened to f32 in registers (a bf16 is the top half of
// an f32), f16 w too (vcvtph2ps), q8_0 w dequantised there (exactly), so products are those of f32 weights and only
// the f32 sums round.
#include "backend/cpu/cpu_kernels_impl.h"

#if defined(__x86_64__) && defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#include <immintrin.h>

#include "backend/cpu/cpu_avx512_ops_impl.h"
#include "backend/cpu/cpu_attention_impl.h"
#include "backend/cpu/cpu_gemm_tile_impl.h"

namespace wick::cpu {
namespace {

// One x row: eight w rows per tile, so eight independent weight streams and accumulators cover FMA latency.
// Several rows: 4 × 4 tiles (16 accumulators + 4 x vectors + 1 w vector of the 32 zmm registers), w streamed up to
// kStreamRows rows.
void gemv_f32w(const GemmBlock& b) { gemm_block<F32Ops, 1, 8, true>(b); }
void gemv_bf16w(const GemmBlock& b) { gemm_block<Bf16WOps, 1, 8, true>(b); }
void gemm_f32w(const GemmBlock& b) { gemm_block<F32Ops, 4, 4, false, kStreamRows>(b); }
void gemm_bf16w(const GemmBlock& b) { gemm_block<Bf16WOps, 4, 4, false, kStreamRows>(b); }
void gemv_f16w(const GemmBlock& b) { gemm_block<F16WOps, 1, 8, true>(b); }
void gemm_f16w(const GemmBlock& b) { gemm_block<F16WOps, 4, 4, false, kStreamRows>(b); }
void gemv_q8w(const GemmBlock& b) { gemm_block<Q8WOps, 1, 8, true>(b); }
// q8_0: 16 accumulators + 8 x + 2 w + the scale.
void gemm_q8w(const GemmBlock& b) { gemm_block<Q8WOps, 4, 4, false, kStreamRows>(b); }

}  // namespace

const IsaKernels kAvx512Kernels = {.gemv_f32w = gemv_f32w,
                                   .gemv_bf16w = gemv_bf16w,
                                   .gemm_f32w = gemm_f32w,
                                   .gemm_bf16w = gemm_bf16w,
                                   .gemv_f16w = gemv_f16w,
                                   .gemm_f16w = gemm_f16w,
                                   .gemv_q8w = gemv_q8w,
                                   .gemm_q8w = gemm_q8w,
                                   .gemm_q8w_widens = false,
                                   .gemv_bf16 = nullptr,
                                   .gemm_bf16 = nullptr,
                                   .to_bf16 = nullptr,
                                   .attention_scores = attention_scores<F32Ops>,
                                   .attention_values = attention_values<F32Ops>,
                                   .softmax_exp = softmax_exp<F32Ops>,
                                   .silu_mul = silu_mul<F32Ops>};

}  // namespace wick::cpu

#else

namespace wick::cpu {
const IsaKernels kAvx512Kernels = {};
}  // namespace wick::cpu

#endif
