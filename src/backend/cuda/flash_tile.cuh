// The pieces of tiled flash attention on tensor cores that the causal prefill kernel (attention_prefill.cu) and the
// bidirectional encoder kernel (encoder_attention.cu) share: a block owns a tile of queries of one head, each warp
// 16 or 32 of them, and walks kKeyTile-key tiles of K and V double-buffered in shared memory by cp.async; the warp's
// scores and output live in mma.sync m16n8k16 fragments (bf16 in, f32 accumulate) with an online softmax. The
// kernels differ only in which keys a query sees and what is added to its scores.
#pragma once

#include "backend/cuda/async_copy.cuh"
#include "backend/cuda/attention_common.cuh"

namespace wick::cuda::flash {

using attention_kernels::bf16;

constexpr int kWarps = 4, kThreads = kWarps * 32;
constexpr int kQueryTile = 16 * kWarps;  // 16 query rows per warp: the M of one mma
constexpr int kKeyTile = 64;
constexpr int kKeyBlocks = kKeyTile / 8;  // a score tile's 8-key mma blocks

// A row of a K or V tile in shared memory, padded so that ldmatrix's 8 row reads fall in distinct banks.
template <int D>
constexpr int kRow = D + 8;

/// The dynamic shared memory of the K and V tiles: two stages of each.
template <int D>
constexpr size_t tile_bytes() {
  return size_t(2) * 2 * kKeyTile * kRow<D> * sizeof(bf16);
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(p))
               : "memory");
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(p))
               : "memory");
}

// c[16x8] += a[16x16] · b[16x8], bf16 operands, f32 accumulators.
__device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// 2^x by the special-function unit in one instruction (exp2f adds range handling around it). Subnormal results
// flush to zero: a probability below 2^-126 counts as none.
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

/// Stage `stage`'s K tile and V tile in `tiles` ([stage][K, V][kKeyTile][kRow<D>]).
template <int D>
__device__ __forceinline__ bf16* key_tile(bf16* tiles, int stage) {
  return tiles + stage * 2 * kKeyTile * kRow<D>;
}
template <int D>
__device__ __forceinline__ bf16* value_tile(bf16* tiles, int stage) {
  return key_tile<D>(tiles, stage) + kKeyTile * kRow<D>;
}

/// Queues cp.async copies of kv head kvh's K and V rows [first, first + count) (k, v [·, kv_heads, D]) into stage
/// `stage`, by the block's Threads threads; tile rows from `count` on are zero-filled and read nothing. Commits the
/// group.
template <int D, int Threads = kThreads>
__device__ __forceinline__ void stage_kv(bf16* tiles, int stage, const bf16* k, const bf16* v, int64_t first,
                                         int64_t count, int kv_heads, int kvh) {
  bf16* ks = key_tile<D>(tiles, stage);
  bf16* vs = value_tile<D>(tiles, stage);
  for (int c = threadIdx.x; c < kKeyTile * D / 8; c += Threads) {
    const int r = c / (D / 8), col = c % (D / 8) * 8;
    const bool valid = r < count;
    const int64_t at = valid ? ((first + r) * kv_heads + kvh) * D + col : 0;
    cp_async16(ks + r * kRow<D> + col, k + at, valid);
    cp_async16(vs + r * kRow<D> + col, v + at, valid);
  }
  cp_async_commit();
}

/// One warp's G groups of 16 query rows of one head (G = 2 reads each K and V fragment from shared memory once for
/// both groups' mma: half the shared-memory traffic per product, at twice the registers). Fragment layouts are those
/// of mma.m16n8k16: in group g a thread holds rows r = lane / 4 and r + 8 of the group's 16 (row0, row1 below),
/// columns 2·(lane % 4) + {0, 1} of every 8-wide block. Q stays in registers; S = Q·Kᵀ comes out of the mma in
/// exactly the layout P needs as the A operand of O += P·V. Scores times `scale` (> 0) are in log2 units, so exp2
/// does the softmax; the running max is kept unscaled, so that scaling and subtracting it are one FMA per score.
template <int D, int G = 1>
struct QueryRows {
  uint32_t qa[G][D / 16][4];
  float o[G][D / 8][4];
  float m[G][2], l[G][2];  // each row's running max (unscaled) and Σ exp2(scale · (s − max))

  /// Loads group g's rows row0 and row1 of head h (q [·, heads, D]; a row that is not `has` reads as zeros) and
  /// clears its accumulators.
  __device__ __forceinline__ void begin(int g, const bf16* q, int64_t row0, int64_t row1, bool has0, bool has1,
                                        int heads, int h, int lane) {
    const int quad = lane % 4;
    const bf16* q0 = q + (row0 * heads + h) * D + 2 * quad;
    const bf16* q1 = q + (row1 * heads + h) * D + 2 * quad;
    const auto word = [](bool has, const bf16* at) { return has ? *reinterpret_cast<const uint32_t*>(at) : 0u; };
#pragma unroll
    for (int kc = 0; kc < D / 16; ++kc) {
      qa[g][kc][0] = word(has0, q0 + kc * 16);
      qa[g][kc][1] = word(has1, q1 + kc * 16);
      qa[g][kc][2] = word(has0, q0 + kc * 16 + 8);
      qa[g][kc][3] = word(has1, q1 + kc * 16 + 8);
    }
#pragma unroll
    for (int dn = 0; dn < D / 8; ++dn) o[g][dn][0] = o[g][dn][1] = o[g][dn][2] = o[g][dn][3] = 0.0f;
    m[g][0] = m[g][1] = -INFINITY;
    l[g][0] = l[g][1] = 0.0f;
  }

  /// s = Q·Kᵀ for the key tile ks ([kKeyTile][kRow<D>]), unscaled: s[g][nb][c] is group g's row c < 2 ? row0 : row1
  /// and key nb·8 + 2·(lane % 4) + c % 2 of the tile.
  __device__ __forceinline__ void scores(float (&s)[G][kKeyBlocks][4], const bf16* ks, int lane) const {
    const int mat = lane / 8, mat_row = lane % 8;  // ldmatrix: lane gives row mat_row of 8x8 matrix mat
#pragma unroll
    for (int g = 0; g < G; ++g)
#pragma unroll
      for (int nb = 0; nb < kKeyBlocks; ++nb) s[g][nb][0] = s[g][nb][1] = s[g][nb][2] = s[g][nb][3] = 0.0f;
#pragma unroll
    for (int kc = 0; kc < D / 16; ++kc) {
#pragma unroll
      for (int nb = 0; nb < kKeyBlocks; nb += 2) {
        uint32_t b[4];  // matrices: keys of block nb then nb + 1, each with dims kc·16 + {0..7, 8..15}
        ldmatrix_x4(b, ks + (nb * 8 + mat / 2 * 8 + mat_row) * kRow<D> + kc * 16 + mat % 2 * 8);
#pragma unroll
        for (int g = 0; g < G; ++g) {
          mma(s[g][nb], qa[g][kc], b[0], b[1]);
          mma(s[g][nb + 1], qa[g][kc], b[2], b[3]);
        }
      }
    }
  }

  /// The online softmax over scores s (times `scale`: log2 units; −inf: a key the row does not see), then O += P·V
  /// with the value tile vs. s is consumed (it becomes P).
  __device__ __forceinline__ void absorb(float (&s)[G][kKeyBlocks][4], float scale, const bf16* vs, int lane) {
#pragma unroll
    for (int g = 0; g < G; ++g) softmax(g, s[g], scale);
    const int mat = lane / 8, mat_row = lane % 8;
#pragma unroll
    for (int kc = 0; kc < kKeyTile / 16; ++kc) {
      uint32_t a[G][4];
#pragma unroll
      for (int g = 0; g < G; ++g) {
        a[g][0] = pack_bf16(s[g][2 * kc][0], s[g][2 * kc][1]);
        a[g][1] = pack_bf16(s[g][2 * kc][2], s[g][2 * kc][3]);
        a[g][2] = pack_bf16(s[g][2 * kc + 1][0], s[g][2 * kc + 1][1]);
        a[g][3] = pack_bf16(s[g][2 * kc + 1][2], s[g][2 * kc + 1][3]);
      }
#pragma unroll
      for (int dn = 0; dn < D / 8; dn += 2) {
        uint32_t b[4];  // V is [key][dim]: transposed loads give the k-major B; keys kc·16 + {0..7, 8..15}
        ldmatrix_x4_trans(b, vs + (kc * 16 + mat % 2 * 8 + mat_row) * kRow<D> + (dn + mat / 2) * 8);
#pragma unroll
        for (int g = 0; g < G; ++g) {
          mma(o[g][dn], a[g], b[0], b[1]);
          mma(o[g][dn + 1], a[g], b[2], b[3]);
        }
      }
    }
  }

  /// Group g's out rows row0 and row1 of head h (out [·, heads, D]) = O / Σ exp; rows that are not `has` are not
  /// written.
  __device__ __forceinline__ void finish(int g, bf16* out, int64_t row0, int64_t row1, bool has0, bool has1,
                                         int heads, int h, int lane) {
    float l0 = l[g][0], l1 = l[g][1];
#pragma unroll
    for (int x = 1; x < 4; x <<= 1) {
      l0 += __shfl_xor_sync(0xffffffffu, l0, x);
      l1 += __shfl_xor_sync(0xffffffffu, l1, x);
    }
    const int quad = lane % 4;
    const float inv0 = l0 > 0.0f ? 1.0f / l0 : 0.0f, inv1 = l1 > 0.0f ? 1.0f / l1 : 0.0f;
    uint32_t* out0 = reinterpret_cast<uint32_t*>(out + (row0 * heads + h) * D + 2 * quad);
    uint32_t* out1 = reinterpret_cast<uint32_t*>(out + (row1 * heads + h) * D + 2 * quad);
#pragma unroll
    for (int dn = 0; dn < D / 8; ++dn) {
      if (has0) out0[dn * 4] = pack_bf16(o[g][dn][0] * inv0, o[g][dn][1] * inv0);
      if (has1) out1[dn * 4] = pack_bf16(o[g][dn][2] * inv1, o[g][dn][3] * inv1);
    }
  }

 private:
  // Group g's online softmax step: s becomes exp2(scale · s − the new max), O and Σ are rescaled to the new max.
  __device__ __forceinline__ void softmax(int g, float (&s)[kKeyBlocks][4], float scale) {
    // The four lanes of a quad share a row.
    float mx0 = m[g][0], mx1 = m[g][1];
#pragma unroll
    for (int nb = 0; nb < kKeyBlocks; ++nb) {
      mx0 = fmaxf(mx0, fmaxf(s[nb][0], s[nb][1]));
      mx1 = fmaxf(mx1, fmaxf(s[nb][2], s[nb][3]));
    }
#pragma unroll
    for (int x = 1; x < 4; x <<= 1) {
      mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, x));
      mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, x));
    }
    // In log2 units; 0 while nothing is seen yet (every score −inf, every exp2 0).
    const float base0 = mx0 == -INFINITY ? 0.0f : mx0 * scale, base1 = mx1 == -INFINITY ? 0.0f : mx1 * scale;
    const float c0 = fast_exp2(fmaf(m[g][0], scale, -base0)), c1 = fast_exp2(fmaf(m[g][1], scale, -base1));
    m[g][0] = mx0, m[g][1] = mx1;
    float l0 = l[g][0] * c0, l1 = l[g][1] * c1;
#pragma unroll
    for (int nb = 0; nb < kKeyBlocks; ++nb) {
      s[nb][0] = fast_exp2(fmaf(s[nb][0], scale, -base0)), s[nb][1] = fast_exp2(fmaf(s[nb][1], scale, -base0));
      s[nb][2] = fast_exp2(fmaf(s[nb][2], scale, -base1)), s[nb][3] = fast_exp2(fmaf(s[nb][3], scale, -base1));
      l0 += s[nb][0] + s[nb][1], l1 += s[nb][2] + s[nb][3];
    }
    l[g][0] = l0, l[g][1] = l1;
#pragma unroll
    for (int dn = 0; dn < D / 8; ++dn) o[g][dn][0] *= c0, o[g][dn][1] *= c0, o[g][dn][2] *= c1, o[g][dn][3] *= c1;
  }
};

}  // namespace wick::cuda::flash
