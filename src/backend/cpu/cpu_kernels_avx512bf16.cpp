// The avx512bf16 path's own kernels (AVX-512 + AVX512_BF16; this file alone is compiled with those flags): x rounded
// to bf16 once, then vdpbf16ps, which multiplies 32 bf16 pairs exactly and adds each neighbouring pair of products
// into one of 16 f32 lanes — twice the multiply-adds of an f32 FMA per instruction, from half the bytes. Every
// product with bf16 weights takes them, one row or many (a row's result must not depend on the rows beside it); the
// path's f32-, f16- and q8_0-weight kernels are avx512's (cpu_kernels.cpp assembles the table).
#include "backend/cpu/cpu_kernels_impl.h"

#if defined(__x86_64__) && defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && \
    defined(__AVX512BF16__)
#include <immintrin.h>

#include "backend/cpu/cpu_avx512_ops_impl.h"
#include "backend/cpu/cpu_gemm_tile_impl.h"

namespace wick::cpu {
namespace {

// bf16 x, bf16 w: 32 elements of k per instruction.
struct DotOps {
  using X = uint16_t;
  using W = uint16_t;
  using XV = __m512bh;
  using WV = __m512bh;
  using Acc = __m512;
  static constexpr int kStep = 32;
  static __m512 zero() { return _mm512_setzero_ps(); }
  static __m512bh load(const uint16_t* p) { return (__m512bh)_mm512_loadu_si512(p); }
  static __m512bh load_tail(const uint16_t* p, int n) { return (__m512bh)_mm512_maskz_loadu_epi16(__mmask32((1u << n) - 1), p); }
  static __m512bh load_x(const uint16_t* p) { return load(p); }
  static __m512bh load_w(const uint16_t* p) { return load(p); }
  static __m512bh load_x_tail(const uint16_t* p, int n) { return load_tail(p, n); }
  static __m512bh load_w_tail(const uint16_t* p, int n) { return load_tail(p, n); }
  static __m512 madd(__m512 acc, __m512bh x, __m512bh w) { return _mm512_dpbf16_ps(acc, x, w); }
  static void sum4(__m512 a, __m512 b, __m512 c, __m512 d, float* out) { sum4_512(a, b, c, d, out); }
};

// The same tiles as avx512's (cpu_kernels_avx512.cpp): eight w rows streamed for one x row, 4 × 4 for several
// (streamed too up to kStreamRows rows).
void gemv_bf16(const GemmBlock& b) { gemm_block<DotOps, 1, 8, true>(b); }
void gemm_bf16(const GemmBlock& b) { gemm_block<DotOps, 4, 4, false, kStreamRows>(b); }

// Round to nearest even (vcvtneps2bf16; denormals flush to zero).
void to_bf16(const float* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(src + i)));
  if (i < n) {
    const __mmask16 m = __mmask16((1u << (n - i)) - 1);
    _mm256_mask_storeu_epi16(dst + i, m, (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, src + i)));
  }
}

}  // namespace

const IsaKernels kAvx512Bf16Kernels = {.gemv_f32w = nullptr,
                                       .gemv_bf16w = nullptr,
                                       .gemm_f32w = nullptr,
                                       .gemm_bf16w = nullptr,
                                       .gemv_f16w = nullptr,
                                       .gemm_f16w = nullptr,
                                       .gemv_q8w = nullptr,
                                       .gemm_q8w = nullptr,
                                       .gemm_q8w_widens = false,
                                       .gemv_bf16 = gemv_bf16,
                                       .gemm_bf16 = gemm_bf16,
                                       .to_bf16 = to_bf16,
                                       .attention_scores = nullptr,
                                       .attention_values = nullptr,
                                       .softmax_exp = nullptr,
                                       .silu_mul = nullptr};

}  // namespace wick::cpu

#else

namespace wick::cpu {
const IsaKernels kAvx512Bf16Kernels = {};
}  // namespace wick::cpu

#endif
