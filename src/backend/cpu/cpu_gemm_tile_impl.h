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

// Rows [r0, r1) of x against w rows [0, cols), MR × NR tiles (then the row and column tails), for k elements: x at
// the rows' k block, w at the first row's (rows ldw W units apart), out at element (r0, first w row).
template <class Ops, int MR, int NR, bool kStream>
  requires(MR >= 1 && MR <= 4)  // the row tails below are spelled out up to 3
void row_groups(const typename Ops::X* x, int64_t ldx, int64_t rows, const typename Ops::W* w, int64_t ldw,
                int64_t cols, int64_t k, float* out, int64_t ldo, float alpha, float beta) {
  const auto group = [&]<int R>(int64_t r) {
    int64_t j = 0;
    for (; j + NR <= cols; j += NR)
      micro_tile<Ops, R, NR, kStream>(x + r * ldx, ldx, w + j * ldw, ldw, k, out + r * ldo + j, ldo, alpha, beta);
    for (; j < cols; ++j)
      micro_tile<Ops, R, 1>(x + r * ldx, ldx, w + j * ldw, ldw, k, out + r * ldo + j, ldo, alpha, beta);
  };
  int64_t r = 0;
  for (; r + MR <= rows; r += MR) group.template operator()<MR>(r);
  const int64_t left = rows - r;
  if constexpr (MR > 1) if (left == 1) group.template operator()<1>(r);
  if constexpr (MR > 2) if (left == 2) group.template operator()<2>(r);
  if constexpr (MR > 3) if (left == 3) group.template operator()<3>(r);
}

// row_groups for a few rows, w streamed (read once from memory): every row group against a tile of NR w rows before
// the next tile, which micro_tile prefetches meanwhile — the tile comes from memory once and stays in L1 for the
// other groups. The same tiles and sums as row_groups', in another order. Out of line: gemm_block's many-row loop
// stays as it compiles alone.
template <class Ops, int MR, int NR>
  requires(MR >= 1 && MR <= 4)
[[gnu::noinline]] void tile_columns(const typename Ops::X* x, int64_t ldx, int64_t rows, const typename Ops::W* w,
                                    int64_t ldw, int64_t cols, int64_t k, float* out, int64_t ldo, float alpha,
                                    float beta) {
  const auto column = [&]<int C>(int64_t j) {
    const auto tile = [&]<int R>(int64_t r) {
      micro_tile<Ops, R, C, C == NR>(x + r * ldx, ldx, w + j * ldw, ldw, k, out + r * ldo + j, ldo, alpha, beta);
    };
    int64_t r = 0;
    for (; r + MR <= rows; r += MR) tile.template operator()<MR>(r);
    const int64_t left = rows - r;
    if constexpr (MR > 1) if (left == 1) tile.template operator()<1>(r);
    if constexpr (MR > 2) if (left == 2) tile.template operator()<2>(r);
    if constexpr (MR > 3) if (left == 3) tile.template operator()<3>(r);
  };
  int64_t j = 0;
  for (; j + NR <= cols; j += NR) column.template operator()<NR>(j);
  for (; j < cols; ++j) column.template operator()<1>(j);
}

// The k blocks of a row of `in` (the same for every tile shape of one Ops: a row's sums must not depend on the tile).
template <class Ops>
int64_t k_block(int64_t in) {
  const int64_t k_blocks = (in + kMaxKBlock - 1) / kMaxKBlock, step = Ops::kStep;
  return k_blocks <= 1 ? in : ((in + k_blocks - 1) / k_blocks + step - 1) / step * step;
}

// Rows of x up to which the AVX-512 paths' products stream w (tile_columns): a batched decode step's. More rows are a
// prefill's, bound by arithmetic. (On a Zen 5, 8 rows: avx512bf16 11–19 % faster, q8_0 on avx512 1.2–1.7×; avx2's
// 3 × 4 tiles ran 11–13 % slower streamed, so its paths do not.)
inline constexpr int kStreamRows = 16;

// Tiles of up to MR x rows × NR w rows over the block, k in blocks (the first applies beta, the rest accumulate).
// The dispatcher handles in == 0. kStream: the one-row GEMV's prefetch; kFewRows: up to that many rows, tile_columns.
template <class Ops, int MR, int NR, bool kStream = false, int kFewRows = 0>
void gemm_block(const GemmBlock& b) {
  const int64_t kc = k_block<Ops>(b.in), ldw = w_units<Ops>(b.in);
  const bool few = kFewRows > 0 && b.r1 - b.r0 <= kFewRows;
  for (int64_t k0 = 0; k0 < b.in; k0 += kc) {
    const auto* x = static_cast<const typename Ops::X*>(b.x) + b.r0 * b.in + k0;
    const auto* w = static_cast<const typename Ops::W*>(b.w) + b.j0 * ldw + w_units<Ops>(k0);
    if (few)
      tile_columns<Ops, MR, NR>(x, b.in, b.r1 - b.r0, w, ldw, b.j1 - b.j0, min_i64(kc, b.in - k0),
                                b.out + b.r0 * b.outs + b.j0, b.outs, b.alpha, k0 == 0 ? b.beta : 1.0f);
    else
      row_groups<Ops, MR, NR, kStream>(x, b.in, b.r1 - b.r0, w, ldw, b.j1 - b.j0, min_i64(kc, b.in - k0),
                                       b.out + b.r0 * b.outs + b.j0, b.outs, b.alpha, k0 == 0 ? b.beta : 1.0f);
  }
}

// gemm_block for a blocked w (Ops, whose one-row product streams it) on a path whose registers cannot hold a tile of
// blocked steps: per k block, the block's w rows dequantised once into b.panel (f32), then Wide's tiles over the
// panel — each weight converted once per block, not once per row group. Wide sums in the lanes Ops does, and the k
// blocks are Ops', so every output is summed as the one-row product sums it.
template <class Ops, class Wide, int MR, int NR>
void gemm_block_widened(const GemmBlock& b) {
  const int64_t kc = k_block<Ops>(b.in), ldw = w_units<Ops>(b.in);
  for (int64_t k0 = 0; k0 < b.in; k0 += kc) {
    const int64_t k = min_i64(kc, b.in - k0), blocks = w_units<Ops>(k), ldp = blocks * Ops::kGroup;
    const auto* w = static_cast<const typename Ops::W*>(b.w) + w_units<Ops>(k0);
    for (int64_t j = b.j0; j < b.j1; ++j)
      for (int64_t u = 0; u < blocks; ++u)
        Ops::widen_block(w + j * ldw + u, b.panel + (j - b.j0) * ldp + u * Ops::kGroup);
    const auto* x = static_cast<const float*>(b.x) + b.r0 * b.in + k0;
    row_groups<Wide, MR, NR, false>(x, b.in, b.r1 - b.r0, b.panel, ldp, b.j1 - b.j0, k, b.out + b.r0 * b.outs + b.j0,
                                    b.outs, b.alpha, k0 == 0 ? b.beta : 1.0f);
  }
}

}  // namespace
}  // namespace wick::cpu
