// The register-tiled gemm every vector path shares, written once over an `Ops` type that each ISA file supplies:
//   X, W              element types of x and w (float, or uint16_t bf16 bits), or for a blocked w (q8_0) W is the
//                     block and kGroup the elements of k it holds (kGroup == kStep: one block a step)
//   XV, WV, Acc       vector types; kStep: elements of k one madd consumes
//   zero(), load_x(p), load_w(p), load_x_tail(p, n), load_w_tail(p, n) (n < kStep, zeros beyond), madd(acc, x, w)
//   sum4(a, b, c, d, out): out[0..3] = horizontal sums of four accumulators, each by the same tree of adds
// Both x and w are k-contiguous (w [outs, in] is used as stored), so a tile is MR × NR dot products, each
// accumulated across vector lanes and reduced once at the end of a k block.
// Included only by ISA files, and everything here has internal linkage (see cpu_kernels_impl.h).
#pragma once

#include <cstdint>

#include "backend/cpu/cpu_kernels_impl.h"

namespace wick::cpu {
namespace {

constexpr int64_t min_i64(int64_t a, int64_t b) { return a < b ? a : b; }

// The Ops::W units that hold k elements of a w row: k, or ⌈k / kGroup⌉ blocks. Offsets passed here are multiples of
// kStep, so they land on a block's start.
template <class Ops>
constexpr int64_t w_units(int64_t k) {
  if constexpr (requires { Ops::kGroup; }) {
    static_assert(Ops::kGroup == Ops::kStep, "a blocked w is read one block a step");
    return (k + Ops::kGroup - 1) / Ops::kGroup;
  } else {
    return k;
  }
}

// One accumulator's horizontal sum by sum4's tree: an output's value must not depend on whether it fell in a tile of
// four or in a tail (a GEMV's tiles are not a GEMM's), so that a row's result never depends on the rows beside it.
template <class Ops>
float sum1(typename Ops::Acc a) {
  float t[4];
  Ops::sum4(a, a, a, a, t);
  return t[0];
}

// k per block: a 4 × 4 tile's x and w rows (8 rows of 2048 bf16: 32 KB) stay in the 48 KB L1 while the tile runs,
// and a block's w rows in L2. Blocks are balanced so the last one is not a sliver. (Not tuned: the Qwen2.5 shapes
// measured have in ≤ 4864, at most 3 blocks.)
constexpr int64_t kMaxKBlock = 2048;

// out[r, j] (r < MR, j < NR) = alpha · Σ_{i<k} x[r, i] · w[j, i] + beta · out[r, j] (out not read when beta == 0);
// x rows ldx elements apart, w rows ldw W units apart.
// kStream (the one-row GEMV, reading w from memory once): each step also prefetches, into L2, the same columns of
// the NR w rows after the tile's, i.e. the next tile, one tile ahead. The rows of a tile are separate streams of only
// `in` elements (1.8 KB for a 896-wide bf16 row), too short for the hardware prefetcher to ramp up on.
template <class Ops, int MR, int NR, bool kStream = false>
void micro_tile(const typename Ops::X* x, int64_t ldx, const typename Ops::W* w, int64_t ldw, int64_t k, float* out,
                int64_t ldo, float alpha, float beta) {
  typename Ops::Acc acc[MR][NR];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
    for (int c = 0; c < NR; ++c) acc[r][c] = Ops::zero();
  int64_t i = 0;
  for (; i + Ops::kStep <= k; i += Ops::kStep) {
    typename Ops::XV xv[MR];
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) xv[r] = Ops::load_x(x + r * ldx + i);
    if constexpr (kStream)
#pragma GCC unroll 8
      for (int c = 0; c < NR; ++c) __builtin_prefetch(w + (c + NR) * ldw + w_units<Ops>(i), 0, 2);
#pragma GCC unroll 8
    for (int c = 0; c < NR; ++c) {
      const typename Ops::WV wv = Ops::load_w(w + c * ldw + w_units<Ops>(i));
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) acc[r][c] = Ops::madd(acc[r][c], xv[r], wv);
    }
  }
  if (i < k) {
    const int n = int(k - i);
    typename Ops::XV xv[MR];
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) xv[r] = Ops::load_x_tail(x + r * ldx + i, n);
#pragma GCC unroll 8
    for (int c = 0; c < NR; ++c) {
      const typename Ops::WV wv = Ops::load_w_tail(w + c * ldw + w_units<Ops>(i), n);
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) acc[r][c] = Ops::madd(acc[r][c], xv[r], wv);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
    float s[NR + 3];
#pragma GCC unroll 8
    for (int c = 0; c < NR; c += 4) {
      if constexpr (NR % 4 == 0) {
        Ops::sum4(acc[r][c], acc[r][c + 1], acc[r][c + 2], acc[r][c + 3], s + c);
      } else {
        s[c] = sum1<Ops>(acc[r][c]);
        if (c + 1 < NR) s[c + 1] = sum1<Ops>(acc[r][c + 1]);
        if (c + 2 < NR) s[c + 2] = sum1<Ops>(acc[r][c + 2]);
        if (c + 3 < NR) s[c + 3] = sum1<Ops>(acc[r][c + 3]);
      }
    }
    float* o = out + r * ldo;
    if (beta == 0.0f) {
#pragma GCC unroll 8
      for (int c = 0; c < NR; ++c) o[c] = alpha * s[c];
    } else {
#pragma GCC unroll 8
      for (int c = 0; c < NR; ++c) o[c] = alpha * s[c] + beta * o[c];
    }
  }
}

// Rows [r, r + MR) of the block against all its w rows, NR at a time, for k ∈ [k0, k0 + k).
template <class Ops, int MR, int NR, bool kStream>
void row_group(const GemmBlock& b, int64_t r, int64_t k0, int64_t k, float beta) {
  const auto* x = static_cast<const typename Ops::X*>(b.x) + r * b.in + k0;
  const auto* w = static_cast<const typename Ops::W*>(b.w) + w_units<Ops>(k0);
  const int64_t ldw = w_units<Ops>(b.in);
  float* out = b.out + r * b.outs;
  int64_t j = b.j0;
  for (; j + NR <= b.j1; j += NR) micro_tile<Ops, MR, NR, kStream>(x, b.in, w + j * ldw, ldw, k, out + j, b.outs, b.alpha, beta);
  for (; j < b.j1; ++j) micro_tile<Ops, MR, 1>(x, b.in, w + j * ldw, ldw, k, out + j, b.outs, b.alpha, beta);
}

// Tiles of up to MR x rows × NR w rows over the block, k in blocks (the first applies beta, the rest accumulate).
// The dispatcher handles in == 0.
template <class Ops, int MR, int NR, bool kStream = false>
  requires(MR >= 1 && MR <= 4)  // the row tails below are spelled out up to 3
void gemm_block(const GemmBlock& b) {
  const int64_t k_blocks = (b.in + kMaxKBlock - 1) / kMaxKBlock;
  const int64_t step = Ops::kStep;
  const int64_t kc = k_blocks <= 1 ? b.in : ((b.in + k_blocks - 1) / k_blocks + step - 1) / step * step;
  for (int64_t k0 = 0; k0 < b.in; k0 += kc) {
    const int64_t k = min_i64(kc, b.in - k0);
    const float beta = k0 == 0 ? b.beta : 1.0f;
    int64_t r = b.r0;
    for (; r + MR <= b.r1; r += MR) row_group<Ops, MR, NR, kStream>(b, r, k0, k, beta);
    const int64_t left = b.r1 - r;
    if constexpr (MR > 1) if (left == 1) row_group<Ops, 1, NR, kStream>(b, r, k0, k, beta);
    if constexpr (MR > 2) if (left == 2) row_group<Ops, 2, NR, kStream>(b, r, k0, k, beta);
    if constexpr (MR > 3) if (left == 3) row_group<Ops, 3, NR, kStream>(b, r, k0, k, beta);
  }
}

}  // namespace
}  // namespace wick::cpu
