// Tiled flash attention on tensor cores (mma.sync m16n8k16, bf16 in, f32 accumulate) for many queries: a block
// owns 64 queries of one head and walks 64-key tiles, double-buffered in shared memory by cp.async, with an online
// softmax.
#include "backend/cuda/attention_prefill.h"

#include <climits>
#include <cmath>

#include "backend/cuda/async_copy.cuh"
#include "backend/cuda/attention_common.cuh"

namespace wick::cuda {

namespace {

using namespace attention_kernels;

constexpr int kWarps = 4, kThreads = kWarps * 32;
constexpr int kQueryTile = 16 * kWarps;  // 16 query rows per warp: the M of one mma
constexpr int kKeyTile = 64;

struct PrefillParams {
  const bf16 *q, *k, *v;
  const int32_t* positions;
  bf16* out;
  int64_t queries, capacity;
  int heads, kv_heads;
  float scale_log2;
};

__device__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(p))
               : "memory");
}

__device__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(p))
               : "memory");
}

// c[16x8] += a[16x16] · b[16x8], bf16 operands, f32 accumulators.
__device__ void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

template <int D>
constexpr size_t prefill_shared_bytes() {
  return size_t(2) * 2 * kKeyTile * (D + 8) * sizeof(bf16);  // two stages of K and V tiles
}

// Grid (query tile, head). Fragment layouts are those of mma.m16n8k16: a thread holds rows r = lane / 4 and
// r + 8 of its warp's 16, columns 2·(lane % 4) + {0, 1} of every 8-wide block. Q stays in registers; S = Q·Kᵀ
// comes out of the mma in exactly the layout P needs as the A operand of O += P·V.
template <int D>
__global__ void __launch_bounds__(kThreads) prefill_kernel(PrefillParams p) {
  constexpr int kRow = D + 8;  // padding: ldmatrix's 8 row reads fall in distinct banks
  extern __shared__ uint4 shared[];
  bf16* tiles = reinterpret_cast<bf16*>(shared);  // [stage][K, V][kKeyTile][kRow]
  __shared__ int warp_last[kWarps];

  const int tile = gridDim.x - 1 - blockIdx.x;  // the longest (latest) query tiles start first
  const int h = blockIdx.y, kvh = h / (p.heads / p.kv_heads);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, quad = lane % 4;
  const int64_t row0 = int64_t(tile) * kQueryTile + warp * 16 + lane / 4, row1 = row0 + 8;
  const bool has0 = row0 < p.queries, has1 = row1 < p.queries;
  const int pos0 = has0 ? p.positions[row0] : -1, pos1 = has1 ? p.positions[row1] : -1;
  // Keys some row of this warp sees, and keys every row sees (no mask needed below it).
  const int warp_max = __reduce_max_sync(0xffffffffu, max(pos0, pos1));
  const int warp_min = __reduce_min_sync(0xffffffffu, min(has0 ? pos0 : INT_MAX, has1 ? pos1 : INT_MAX));
  if (lane == 0) warp_last[warp] = warp_max;
  __syncthreads();
  int block_last = warp_last[0];
  for (int w = 1; w < kWarps; ++w) block_last = max(block_last, warp_last[w]);
  const int64_t keys = min(int64_t(block_last) + 1, p.capacity);

  const auto stage_tile = [&](int64_t kt, int stage) {
    bf16* ks = tiles + stage * 2 * kKeyTile * kRow;
    bf16* vs = ks + kKeyTile * kRow;
    for (int c = threadIdx.x; c < kKeyTile * D / 8; c += kThreads) {
      const int r = c / (D / 8), col = c % (D / 8) * 8;
      const int64_t key = kt * kKeyTile + r;
      const bool valid = key < keys;  // rows past the last visible key are zeros, never read
      const int64_t at = valid ? (key * p.kv_heads + kvh) * D + col : 0;
      cp_async16(ks + r * kRow + col, p.k + at, valid);
      cp_async16(vs + r * kRow + col, p.v + at, valid);
    }
    cp_async_commit();
  };

  uint32_t qa[D / 16][4];
  {
    const bf16* q0 = p.q + (row0 * p.heads + h) * D + 2 * quad;
    const bf16* q1 = p.q + (row1 * p.heads + h) * D + 2 * quad;
    const auto word = [](bool has, const bf16* at) { return has ? *reinterpret_cast<const uint32_t*>(at) : 0u; };
#pragma unroll
    for (int kc = 0; kc < D / 16; ++kc) {
      qa[kc][0] = word(has0, q0 + kc * 16);
      qa[kc][1] = word(has1, q1 + kc * 16);
      qa[kc][2] = word(has0, q0 + kc * 16 + 8);
      qa[kc][3] = word(has1, q1 + kc * 16 + 8);
    }
  }

  float o[D / 8][4] = {};
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;
  const int64_t key_tiles = ceil_div(keys, kKeyTile);
  const int mat = lane / 8, mat_row = lane % 8;  // ldmatrix: lane gives row mat_row of 8x8 matrix mat
  if (key_tiles > 0) stage_tile(0, 0);
  for (int64_t kt = 0; kt < key_tiles; ++kt) {
    if (kt + 1 < key_tiles) {
      stage_tile(kt + 1, (kt + 1) % 2);
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const int64_t first_key = kt * kKeyTile;
    if (first_key <= warp_max) {
      const bf16* ks = tiles + kt % 2 * 2 * kKeyTile * kRow;
      const bf16* vs = ks + kKeyTile * kRow;
      float s[kKeyTile / 8][4] = {};
#pragma unroll
      for (int kc = 0; kc < D / 16; ++kc) {
#pragma unroll
        for (int nb = 0; nb < kKeyTile / 8; nb += 2) {
          uint32_t b[4];  // matrices: keys of block nb then nb + 1, each with dims kc·16 + {0..7, 8..15}
          ldmatrix_x4(b, ks + (nb * 8 + mat / 2 * 8 + mat_row) * kRow + kc * 16 + mat % 2 * 8);
          mma(s[nb], qa[kc], b[0], b[1]);
          mma(s[nb + 1], qa[kc], b[2], b[3]);
        }
      }
      const bool mask = first_key + kKeyTile - 1 > warp_min;
#pragma unroll
      for (int nb = 0; nb < kKeyTile / 8; ++nb)
#pragma unroll
        for (int c = 0; c < 4; ++c) {
          const int64_t key = first_key + nb * 8 + 2 * quad + c % 2;
          const bool seen = !mask || key <= (c < 2 ? pos0 : pos1);
          s[nb][c] = seen ? s[nb][c] * p.scale_log2 : -INFINITY;
        }

      // Online softmax; the four lanes of a quad share a row.
      float mx0 = m0, mx1 = m1;
#pragma unroll
      for (int nb = 0; nb < kKeyTile / 8; ++nb) {
        mx0 = fmaxf(mx0, fmaxf(s[nb][0], s[nb][1]));
        mx1 = fmaxf(mx1, fmaxf(s[nb][2], s[nb][3]));
      }
#pragma unroll
      for (int x = 1; x < 4; x <<= 1) {
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, x));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, x));
      }
      const float base0 = mx0 == -INFINITY ? 0.0f : mx0, base1 = mx1 == -INFINITY ? 0.0f : mx1;  // nothing seen yet
      const float c0 = exp2f(m0 - base0), c1 = exp2f(m1 - base1);
      m0 = mx0, m1 = mx1;
      l0 *= c0, l1 *= c1;
#pragma unroll
      for (int nb = 0; nb < kKeyTile / 8; ++nb) {
        s[nb][0] = exp2f(s[nb][0] - base0), s[nb][1] = exp2f(s[nb][1] - base0);
        s[nb][2] = exp2f(s[nb][2] - base1), s[nb][3] = exp2f(s[nb][3] - base1);
        l0 += s[nb][0] + s[nb][1], l1 += s[nb][2] + s[nb][3];
      }
#pragma unroll
      for (int dn = 0; dn < D / 8; ++dn) o[dn][0] *= c0, o[dn][1] *= c0, o[dn][2] *= c1, o[dn][3] *= c1;

#pragma unroll
      for (int kc = 0; kc < kKeyTile / 16; ++kc) {
        const uint32_t a[4] = {pack_bf16(s[2 * kc][0], s[2 * kc][1]), pack_bf16(s[2 * kc][2], s[2 * kc][3]),
                               pack_bf16(s[2 * kc + 1][0], s[2 * kc + 1][1]),
                               pack_bf16(s[2 * kc + 1][2], s[2 * kc + 1][3])};
#pragma unroll
        for (int dn = 0; dn < D / 8; dn += 2) {
          uint32_t b[4];  // V is [key][dim]: transposed loads give the k-major B; keys kc·16 + {0..7, 8..15}
          ldmatrix_x4_trans(b, vs + (kc * 16 + mat % 2 * 8 + mat_row) * kRow + (dn + mat / 2) * 8);
          mma(o[dn], a, b[0], b[1]);
          mma(o[dn + 1], a, b[2], b[3]);
        }
      }
    }
    __syncthreads();  // the next iteration stages into this buffer
  }

#pragma unroll
  for (int x = 1; x < 4; x <<= 1) {
    l0 += __shfl_xor_sync(0xffffffffu, l0, x);
    l1 += __shfl_xor_sync(0xffffffffu, l1, x);
  }
  const float inv0 = l0 > 0.0f ? 1.0f / l0 : 0.0f, inv1 = l1 > 0.0f ? 1.0f / l1 : 0.0f;
  uint32_t* out0 = reinterpret_cast<uint32_t*>(p.out + (row0 * p.heads + h) * D + 2 * quad);
  uint32_t* out1 = reinterpret_cast<uint32_t*>(p.out + (row1 * p.heads + h) * D + 2 * quad);
#pragma unroll
  for (int dn = 0; dn < D / 8; ++dn) {
    if (has0) out0[dn * 4] = pack_bf16(o[dn][0] * inv0, o[dn][1] * inv0);
    if (has1) out1[dn * 4] = pack_bf16(o[dn][2] * inv1, o[dn][3] * inv1);
  }
}

template <int D>
void launch_prefill(const void* q, const void* k, const void* v, const int32_t* positions, void* out,
                    const AttentionShape& s, cudaStream_t stream) {
  constexpr size_t bytes = prefill_shared_bytes<D>();
  allow_shared_bytes<prefill_kernel<D>>(bytes);
  const PrefillParams p{.q = static_cast<const bf16*>(q), .k = static_cast<const bf16*>(k),
                        .v = static_cast<const bf16*>(v), .positions = positions, .out = static_cast<bf16*>(out),
                        .queries = s.queries, .capacity = s.capacity, .heads = int(s.heads),
                        .kv_heads = int(s.kv_heads), .scale_log2 = s.scale * kLog2e};
  const dim3 grid(unsigned(ceil_div(s.queries, kQueryTile)), unsigned(s.heads));
  prefill_kernel<D><<<grid, kThreads, bytes, stream>>>(p);
}

}  // namespace

bool attention_prefill(const void* q, const void* k, const void* v, const int32_t* positions, void* out,
                       const AttentionShape& s, cudaStream_t stream) {
  if (s.head_dim > kPrefillMaxHeadDim) return false;
  return with_head_dim(s.head_dim, [&](auto d) {
    if constexpr (d.value <= kPrefillMaxHeadDim) launch_prefill<d.value>(q, k, v, positions, out, s, stream);
  });
}

}  // namespace wick::cuda
