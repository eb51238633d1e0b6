// The avx512 path (AVX-512 F/BW/VL/DQ + FMA; this file alone is compiled with those flags, see CMakeLists.txt):
// f32 x against f32 or bf16 w, 16 lanes. bf16 w is widened to f32 in registers (a bf16 is the top half of an f32),
// so products are exact and only the f32 sums round.
#include "backend/cpu/cpu_kernels_impl.h"

#if defined(__x86_64__) && defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#include <immintrin.h>

#include "backend/cpu/cpu_avx512_ops_impl.h"
#include "backend/cpu/cpu_attention_impl.h"
#include "backend/cpu/cpu_gemm_tile_impl.h"

namespace wick::cpu {
namespace {

// One x row: eight w rows per tile, so eight independent weight streams and accumulators cover FMA latency.
// Several rows: 4 × 4 tiles (16 accumulators + 4 x vectors + 1 w vector of the 32 zmm registers).
void gemv_f32w(const GemmBlock& b) { gemm_block<F32Ops, 1, 8, true>(b); }
void gemv_bf16w(const GemmBlock& b) { gemm_block<Bf16WOps, 1, 8, true>(b); }
void gemm_f32w(const GemmBlock& b) { gemm_block<F32Ops, 4, 4>(b); }
void gemm_bf16w(const GemmBlock& b) { gemm_block<Bf16WOps, 4, 4>(b); }

}  // namespace

const IsaKernels kAvx512Kernels = {gemv_f32w, gemv_bf16w, gemm_f32w, gemm_bf16w, nullptr, nullptr, nullptr,
                                   attention_scores<F32Ops>, attention_values<F32Ops>, softmax_exp<F32Ops>,
                                   silu_mul<F32Ops>};

}  // namespace wick::cpu

#else

namespace wick::cpu {
const IsaKernels kAvx512Kernels = {};
}  // namespace wick::cpu

#endif
