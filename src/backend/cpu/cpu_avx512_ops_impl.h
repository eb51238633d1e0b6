// The AVX-512 vector operations of the tiled gemm (cpu_gemm_tile_impl.h describes the Ops interface), shared by the
// files compiled with AVX-512 flags (cpu_kernels_avx512.cpp, cpu_kernels_avx512bf16.cpp) and only by them.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "backend/cpu/cpu_kernels_impl.h"

namespace wick::cpu {
namespace {

// Horizontal sums of four accumulators into out[0..3]: pairs interleaved within 128-bit lanes, then lanes folded.
inline void sum4_512(__m512 a, __m512 b, __m512 c, __m512 d, float* out) {
  const __m512 ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));  // a02 b02 a13 b13
  const __m512 cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
  const __m512 abcd = _mm512_add_ps(_mm512_shuffle_ps(ab, cd, _MM_SHUFFLE(1, 0, 1, 0)),
                                    _mm512_shuffle_ps(ab, cd, _MM_SHUFFLE(3, 2, 3, 2)));  // a b c d per lane
  const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(abcd),
                                 _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(abcd), 1)));
  _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
}

// f32 x, f32 w.
struct F32Ops {
  using X = float;
  using W = float;
  using XV = __m512;
  using WV = __m512;
  using Acc = __m512;
  static constexpr int kStep = 16;
  static __m512 zero() { return _mm512_setzero_ps(); }
  static __m512 load_x(const float* p) { return _mm512_loadu_ps(p); }
  static __m512 load_x_tail(const float* p, int n) { return _mm512_maskz_loadu_ps(__mmask16((1u << n) - 1), p); }
  static __m512 load_w(const float* p) { return _mm512_loadu_ps(p); }
  static __m512 load_w_tail(const float* p, int n) { return load_x_tail(p, n); }
  static __m512 madd(__m512 acc, __m512 x, __m512 w) { return _mm512_fmadd_ps(x, w, acc); }
  static __m512 set1(float v) { return _mm512_set1_ps(v); }
  static void store(float* p, __m512 v) { _mm512_storeu_ps(p, v); }
  static void store_tail(float* p, __m512 v, int n) { _mm512_mask_storeu_ps(p, __mmask16((1u << n) - 1), v); }
  // lanes [0, n) from p, the rest v
  static __m512 load_tail_fill(const float* p, int n, float v) {
    return _mm512_mask_loadu_ps(_mm512_set1_ps(v), __mmask16((1u << n) - 1), p);
  }
  static __m512 add(__m512 a, __m512 b) { return _mm512_add_ps(a, b); }
  static __m512 sub(__m512 a, __m512 b) { return _mm512_sub_ps(a, b); }
  static __m512 mul(__m512 a, __m512 b) { return _mm512_mul_ps(a, b); }
  static __m512 fmadd(__m512 a, __m512 b, __m512 c) { return _mm512_fmadd_ps(a, b, c); }  // a·b + c
  static __m512 max(__m512 a, __m512 b) { return _mm512_max_ps(a, b); }
  static __m512 min(__m512 a, __m512 b) { return _mm512_min_ps(a, b); }
  static __m512 div(__m512 a, __m512 b) { return _mm512_div_ps(a, b); }
  static float hmax(__m512 a) { return _mm512_reduce_max_ps(a); }
  static __m512 round(__m512 x) { return _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static __m512 scale2(__m512 p, __m512 n) { return _mm512_scalef_ps(p, n); }  // p · 2ⁿ
  // v where x ≥ lo, else 0
  static __m512 zero_below(__m512 v, __m512 x, __m512 lo) {
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, lo, _CMP_GE_OQ), v);
  }
  static void sum4(__m512 a, __m512 b, __m512 c, __m512 d, float* out) { sum4_512(a, b, c, d, out); }
};

// 16 bf16 or f16 bit patterns → f32, exactly: bf16 zero-extended and shifted into the top half, f16 by vcvtph2ps
// (every f16 value, subnormals included, is an f32).
inline __m512 widen_bf16(__m256i v) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16)); }
inline __m512 widen_f16(__m256i v) { return _mm512_cvtph_ps(v); }

// f32 x, 16-bit w (bf16 or f16) widened to f32 by `widen`.
template <__m512 (*widen)(__m256i)>
struct HalfWOps : F32Ops {
  using W = uint16_t;
  static __m512 load_w(const uint16_t* p) { return widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
  static __m512 load_w_tail(const uint16_t* p, int n) {
    return widen(_mm256_maskz_loadu_epi16(__mmask16((1u << n) - 1), p));
  }
};
using Bf16WOps = HalfWOps<widen_bf16>;
using F16WOps = HalfWOps<widen_f16>;

// f32 x, q8_0 w: a block of 32 dequantised in registers (int8 → f32, times the block's f16 scale: exact in f32), then
// two FMAs — the same sums, in the same order, as F32Ops on the dequantised weights.
struct Q8WOps {
  struct Pair {
    __m512 lo, hi;  // elements [0, 16) and [16, 32) of a block
  };
  using X = float;
  using W = Q8Block;
  using XV = Pair;
  using WV = Pair;
  using Acc = __m512;
  static constexpr int kStep = 32;
  static constexpr int kGroup = 32;
  static __m512 zero() { return _mm512_setzero_ps(); }
  static Pair load_x(const float* p) { return {_mm512_loadu_ps(p), _mm512_loadu_ps(p + 16)}; }
  static Pair load_x_tail(const float* p, int n) {
    const __mmask16 lo = n >= 16 ? __mmask16(0xffff) : __mmask16((1u << n) - 1);
    const __mmask16 hi = n > 16 ? __mmask16((1u << (n - 16)) - 1) : __mmask16(0);
    return {_mm512_maskz_loadu_ps(lo, p), _mm512_maskz_loadu_ps(hi, p + 16)};
  }
  static __m512 widen(const int8_t* q, __m512 scale) {
    return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q)))),
                         scale);
  }
  static Pair load_w(const Q8Block* b) {
    const __m512 s = _mm512_cvtph_ps(_mm256_set1_epi16(short(b->scale)));
    return {widen(b->q, s), widen(b->q + 16, s)};
  }
  // A row's last block is whole, with zeros after its values.
  static Pair load_w_tail(const Q8Block* b, int) { return load_w(b); }
  static __m512 madd(__m512 acc, Pair x, Pair w) {
    return _mm512_fmadd_ps(x.hi, w.hi, _mm512_fmadd_ps(x.lo, w.lo, acc));
  }
  static void sum4(__m512 a, __m512 b, __m512 c, __m512 d, float* out) { sum4_512(a, b, c, d, out); }
};

}  // namespace
}  // namespace wick::cpu
