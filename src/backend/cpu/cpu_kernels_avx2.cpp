// The avx2 path (AVX2 + FMA + F16C; this file alone is compiled with those flags, see CMakeLists.txt): f32 x against
// f32, bf16, f16 or q8_0 w, 8 lanes, bf16 and f16 w widened and q8_0 w dequantised to f32 in registers as on avx512.
#include "backend/cpu/cpu_kernels_impl.h"

#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

#include <cstring>

#include "backend/cpu/cpu_attention_impl.h"
#include "backend/cpu/cpu_gemm_tile_impl.h"

namespace wick::cpu {
namespace {

// Lanes [0, n) all ones: maskload's element mask.
inline __m256i first_lanes(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// f32 x, f32 w.
struct F32Ops {
  using X = float;
  using W = float;
  using XV = __m256;
  using WV = __m256;
  using Acc = __m256;
  static constexpr int kStep = 8;
  static __m256 zero() { return _mm256_setzero_ps(); }
  static __m256 load_x(const float* p) { return _mm256_loadu_ps(p); }
  static __m256 load_x_tail(const float* p, int n) { return _mm256_maskload_ps(p, first_lanes(n)); }
  static __m256 load_w(const float* p) { return _mm256_loadu_ps(p); }
  static __m256 load_w_tail(const float* p, int n) { return load_x_tail(p, n); }
  static __m256 madd(__m256 acc, __m256 x, __m256 w) { return _mm256_fmadd_ps(x, w, acc); }
  static __m256 set1(float v) { return _mm256_set1_ps(v); }
  static void store(float* p, __m256 v) { _mm256_storeu_ps(p, v); }
  static void store_tail(float* p, __m256 v, int n) { _mm256_maskstore_ps(p, first_lanes(n), v); }
  // lanes [0, n) from p, the rest v
  static __m256 load_tail_fill(const float* p, int n, float v) {
    const __m256i m = first_lanes(n);
    return _mm256_blendv_ps(_mm256_set1_ps(v), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
  }
  static __m256 add(__m256 a, __m256 b) { return _mm256_add_ps(a, b); }
  static __m256 sub(__m256 a, __m256 b) { return _mm256_sub_ps(a, b); }
  static __m256 mul(__m256 a, __m256 b) { return _mm256_mul_ps(a, b); }
  static __m256 fmadd(__m256 a, __m256 b, __m256 c) { return _mm256_fmadd_ps(a, b, c); }  // a·b + c
  static __m256 max(__m256 a, __m256 b) { return _mm256_max_ps(a, b); }
  static __m256 min(__m256 a, __m256 b) { return _mm256_min_ps(a, b); }
  static __m256 div(__m256 a, __m256 b) { return _mm256_div_ps(a, b); }
  static float hmax(__m256 a) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
  }
  static __m256 round(__m256 x) { return _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  // p · 2ⁿ for integral n in [−126, 127]: n added to p's exponent
  static __m256 scale2(__m256 p, __m256 n) {
    const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
  }
  // v where x ≥ lo, else 0
  static __m256 zero_below(__m256 v, __m256 x, __m256 lo) { return _mm256_and_ps(v, _mm256_cmp_ps(x, lo, _CMP_GE_OQ)); }
  // Pairs interleaved within 128-bit lanes, then the two lanes folded.
  static void sum4(__m256 a, __m256 b, __m256 c, __m256 d, float* out) {
    const __m256 ab = _mm256_add_ps(_mm256_unpacklo_ps(a, b), _mm256_unpackhi_ps(a, b));
    const __m256 cd = _mm256_add_ps(_mm256_unpacklo_ps(c, d), _mm256_unpackhi_ps(c, d));
    const __m256 abcd = _mm256_add_ps(_mm256_shuffle_ps(ab, cd, _MM_SHUFFLE(1, 0, 1, 0)),
                                      _mm256_shuffle_ps(ab, cd, _MM_SHUFFLE(3, 2, 3, 2)));
    _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1)));
  }
};

// 8 bf16 or f16 bit patterns → f32, exactly: bf16 zero-extended and shifted into the top half, f16 by F16C.
inline __m256 widen_bf16(__m128i v) { return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16)); }
inline __m256 widen_f16(__m128i v) { return _mm256_cvtph_ps(v); }

// f32 x, 16-bit w (bf16 or f16) widened to f32 by `widen`. AVX2 has no 16-bit masked load: the tail goes through a
// zeroed copy.
template <__m256 (*widen)(__m128i)>
struct HalfWOps : F32Ops {
  using W = uint16_t;
  static __m256 load_w(const uint16_t* p) { return widen(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  static __m256 load_w_tail(const uint16_t* p, int n) {
    uint16_t tail[8] = {};
    std::memcpy(tail, p, size_t(n) * sizeof(uint16_t));
    return load_w(tail);
  }
};
using Bf16WOps = HalfWOps<widen_bf16>;
using F16WOps = HalfWOps<widen_f16>;

// f32 x, q8_0 w: a block of 32 dequantised in registers (int8 → f32, times the block's f16 scale: exact in f32), then
// four FMAs — the same sums, in the same order, as F32Ops on the dequantised weights.
struct Q8WOps {
  struct Quad {
    __m256 v[4];  // elements [0, 8), [8, 16), [16, 24), [24, 32) of a block
  };
  using X = float;
  using W = Q8Block;
  using XV = Quad;
  using WV = Quad;
  using Acc = __m256;
  static constexpr int kStep = 32;
  static constexpr int kGroup = 32;
  static __m256 zero() { return _mm256_setzero_ps(); }
  static Quad load_x(const float* p) {
    return {{_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8), _mm256_loadu_ps(p + 16), _mm256_loadu_ps(p + 24)}};
  }
  static Quad load_x_tail(const float* p, int n) {  // first_lanes(m ≤ 0) is empty, first_lanes(m ≥ 8) full
    return {{_mm256_maskload_ps(p, first_lanes(n)), _mm256_maskload_ps(p + 8, first_lanes(n - 8)),
             _mm256_maskload_ps(p + 16, first_lanes(n - 16)), _mm256_maskload_ps(p + 24, first_lanes(n - 24))}};
  }
  static __m256 widen(const int8_t* q, __m256 scale) {
    return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q)))),
                         scale);
  }
  static Quad load_w(const Q8Block* b) {
    const __m256 s = _mm256_cvtph_ps(_mm_set1_epi16(short(b->scale)));
    return {{widen(b->q, s), widen(b->q + 8, s), widen(b->q + 16, s), widen(b->q + 24, s)}};
  }
  // A row's last block is whole, with zeros after its values.
  static Quad load_w_tail(const Q8Block* b, int) { return load_w(b); }
  static void widen_block(const Q8Block* b, float* dst) {  // the block's 32 values, for gemm_block_widened
    const Quad w = load_w(b);
    for (int i = 0; i < 4; ++i) _mm256_storeu_ps(dst + 8 * i, w.v[i]);
  }
  static __m256 madd(__m256 acc, const Quad& x, const Quad& w) {
    for (int i = 0; i < 4; ++i) acc = _mm256_fmadd_ps(x.v[i], w.v[i], acc);
    return acc;
  }
  static void sum4(__m256 a, __m256 b, __m256 c, __m256 d, float* out) { F32Ops::sum4(a, b, c, d, out); }
};

// 16 ymm registers: one x row × 8 w rows (8 accumulators), or 3 × 4 tiles (12 accumulators + 3 x + 1 w). A q8_0 step
// spans 4 registers of x and of w, too many for a tile of several rows: the many-row product dequantises a block's
// w rows once into an f32 panel and runs F32Ops' 3 × 4 tiles over it (F32Ops sums in Q8WOps' lanes).
void gemv_f32w(const GemmBlock& b) { gemm_block<F32Ops, 1, 8, true>(b); }
void gemv_bf16w(const GemmBlock& b) { gemm_block<Bf16WOps, 1, 8, true>(b); }
void gemm_f32w(const GemmBlock& b) { gemm_block<F32Ops, 3, 4>(b); }
void gemm_bf16w(const GemmBlock& b) { gemm_block<Bf16WOps, 3, 4>(b); }
void gemv_f16w(const GemmBlock& b) { gemm_block<F16WOps, 1, 8, true>(b); }
void gemm_f16w(const GemmBlock& b) { gemm_block<F16WOps, 3, 4>(b); }
void gemv_q8w(const GemmBlock& b) { gemm_block<Q8WOps, 1, 8, true>(b); }
void gemm_q8w(const GemmBlock& b) { gemm_block_widened<Q8WOps, F32Ops, 3, 4>(b); }

}  // namespace

const IsaKernels kAvx2Kernels = {.gemv_f32w = gemv_f32w,
                                 .gemv_bf16w = gemv_bf16w,
                                 .gemm_f32w = gemm_f32w,
                                 .gemm_bf16w = gemm_bf16w,
                                 .gemv_f16w = gemv_f16w,
                                 .gemm_f16w = gemm_f16w,
                                 .gemv_q8w = gemv_q8w,
                                 .gemm_q8w = gemm_q8w,
                                 .gemm_q8w_widens = true,
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
const IsaKernels kAvx2Kernels = {};
}  // namespace wick::cpu

#endif
