// The fused few-row kernels (fused_rows.h): a decode step of up to 32 sequences reads each weight once, as the
// one-token kernels do, and multiplies it on the tensor cores (mma.sync m16n8k16, bf16 in, f32 accumulate).
//
// A warp owns a tile of 16 weight rows: rows 0-7 and 8-15 of the tile are the two members of 8 pairs — the halves
// (i, i + d/2) of a rotated head, the same row of gate and up, or (residual, f32) 16 neighbouring rows — so that
// each lane ends up holding both members of a pair for the same token rows, and the epilogue needs no exchange.
// Each lane streams 16 bytes of two weight rows per 32 inputs (the k order inside an mma is free, as long as the
// input rows use the same one: a lane's 8 consecutive weights feed both k16 steps), two sets of loads in flight
// while the other set is multiplied. The input rows (a few KB, read by every warp) come through L1.
//
// The RMSNorm before a projection rides along: the products are of x ⊙ g, and each token row's sum of squares is
// gathered from the same loads of x, so the scale 1/√(mean(x²) + eps) is applied to the sums in the epilogue.
//
// A block owns one tile; its warps split the tile's k between them and add their sums up in shared memory, after
// which the first warp runs the epilogue. The launch picks the most warps per block that still lets every tile's
// block be resident at once (one wave: a second wave would double the latency, which is what a step of few rows
// costs): on an H100 with the 0.5B shape, 16 for the 56 tiles of down_proj, 14 (two k blocks each of 896 inputs) for
// o_proj's 56 and the 72 of q/k/v, 3 for gate/up's 608, one for the head's 9,496 (block sizes seen by ncu). Nothing
// crosses blocks, so there are no partial sums parked in global memory, no fences and no counters.
//
// Chaining (chain.cuh): the first weight loads are issued before chain_wait(); the input rows and the epilogue's
// operands (positions and pool rows, or the residual stream) are touched only after it — the operands at once, so
// that their loads overlap the weights' instead of following the sums.
#include "backend/cuda/fused_rows.h"

#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <utility>

#include "backend/cuda/chain.cuh"
#include "backend/cuda/cuda_check.h"

namespace wick::cuda {

namespace fused_rows {

namespace {

using bf16 = __nv_bfloat16;
constexpr int kMaxWarps = 16;  // per block: the warps over one tile's k
constexpr int kMaxThreads = kMaxWarps * 32;
// k blocks of weight loads a lane issues at a time (two sets in flight): fewer with 32 token rows, whose sums take
// the registers.
template <int NT>
constexpr int kHalf = NT == 4 ? 2 : 4;

enum class Epilogue { attention_inputs, gate_up, residual, f32 };

struct Params {
  const bf16* x = nullptr;
  const bf16* norm = nullptr;  // RMSNorm weight [k], or null: x is used as it is
  float eps = 0.0f;
  int rows = 0, k = 0;
  const bf16* w[3] = {};
  const bf16* bias[3] = {};
  int out_rows = 0;  // gate/up: ffn; residual and f32: rows of w[0]
  int tiles = 0;     // of 16 weight rows: one block each
  int warp_kb = 0;   // k blocks of each warp of a block
  int heads = 0, kv_heads = 0, head_dim = 0;
  const int32_t* positions = nullptr;
  const int32_t* slots = nullptr;
  double log_theta = 0.0;
  bf16* out = nullptr;
  float* out_f32 = nullptr;
  bf16* k_pool = nullptr;
  bf16* v_pool = nullptr;
};

__device__ __forceinline__ void mma(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                    uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// x ⊙ g, eight bf16 at a time.
__device__ __forceinline__ uint4 times(uint4 x, const uint4& g) {
  __nv_bfloat162* xh = reinterpret_cast<__nv_bfloat162*>(&x);
  const __nv_bfloat162* gh = reinterpret_cast<const __nv_bfloat162*>(&g);
#pragma unroll
  for (int q = 0; q < 4; ++q) xh[q] = __hmul2(xh[q], gh[q]);
  return x;
}

// sum + Σ of the squares of eight bf16.
__device__ __forceinline__ float sum_squares(const uint4& v, float sum) {
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&v);
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    const float2 f = __bfloat1622float2(h[q]);
    sum = fmaf(f.x, f.x, fmaf(f.y, f.y, sum));
  }
  return sum;
}

// Where row i (0-15) of tile `tile` is, and whether it exists (rows past the end read row 0 and store nothing).
struct TileRow {
  const bf16* w;
  bool valid;
};

template <Epilogue E>
__device__ TileRow tile_row(const Params& a, int tile, int i) {
  const bool second = i >= 8;
  if constexpr (E == Epilogue::attention_inputs) {
    const int half = a.head_dim / 2, p = tile * 8 + (i & 7), head = p / half, j = p % half;
    const int proj = head < a.heads ? 0 : head < a.heads + a.kv_heads ? 1 : 2;
    const int local = head - (proj == 0 ? 0 : proj == 1 ? a.heads : a.heads + a.kv_heads);
    const bool valid = head < a.heads + 2 * a.kv_heads;
    const int row = local * a.head_dim + j + (second ? half : 0);
    return {valid ? a.w[proj] + int64_t(row) * a.k : a.w[0], valid};
  } else if constexpr (E == Epilogue::gate_up) {
    const int p = tile * 8 + (i & 7);
    const bool valid = p < a.out_rows;
    return {valid ? a.w[second ? 1 : 0] + int64_t(p) * a.k : a.w[0], valid};
  } else {
    const int r = tile * 16 + i;
    const bool valid = r < a.out_rows;
    return {valid ? a.w[0] + int64_t(r) * a.k : a.w[0], valid};
  }
}

__device__ __forceinline__ float round_bf16(float v) { return __bfloat162float(__float2bfloat16(v)); }

// The epilogue's operands of the lane's token rows — positions and pool rows, or the residual stream's values —
// loaded all at once before the first store (a store may alias them, so loads left among the stores would each wait
// out the one before).
template <Epilogue E, int NT>
struct Operands {
  int pos[NT][2] = {}, slot[NT][2] = {};
  float residual[NT][2][2] = {};
};

template <Epilogue E, int NT>
__device__ Operands<E, NT> operands_of(const Params& a, int tile, int g, int t) {
  Operands<E, NT> o;
#pragma unroll
  for (int nt = 0; nt < NT; ++nt)
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const int n = nt * 8 + 2 * t + j;
      if (n >= a.rows) continue;
      if constexpr (E == Epilogue::attention_inputs) {
        o.pos[nt][j] = a.positions[n];
        o.slot[nt][j] = a.slots[n];
      } else if constexpr (E == Epilogue::residual) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int r = tile * 16 + g + 8 * h;
          if (r < a.out_rows) o.residual[nt][j][h] = __bfloat162float(a.out[int64_t(n) * a.out_rows + r]);
        }
      }
    }
  return o;
}

// The epilogue of the lane's sums: acc[nt][j] is row g of the tile (a pair's first member), acc[nt][2 + j] row
// g + 8 (its second), both for token row nt·8 + 2t + j.
template <Epilogue E, int NT>
__device__ void finish(const Params& a, int tile, int g, int t, const float (&acc)[NT][4], const Operands<E, NT>& o) {
  float bias0 = 0.0f, bias1 = 0.0f;  // the pair's biases (attention inputs)
  if constexpr (E == Epilogue::attention_inputs) {
    const int half = a.head_dim / 2, p = tile * 8 + g, head = p / half, i = p % half;
    const int proj = head < a.heads ? 0 : head < a.heads + a.kv_heads ? 1 : 2;
    const int local = head - (proj == 0 ? 0 : proj == 1 ? a.heads : a.heads + a.kv_heads);
    if (head < a.heads + 2 * a.kv_heads && a.bias[proj]) {
      bias0 = __bfloat162float(a.bias[proj][local * a.head_dim + i]);
      bias1 = __bfloat162float(a.bias[proj][local * a.head_dim + i + half]);
    }
  }
#pragma unroll
  for (int nt = 0; nt < NT; ++nt)
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const int n = nt * 8 + 2 * t + j;
      if (n >= a.rows) continue;
      const float s0 = acc[nt][j], s1 = acc[nt][2 + j];
      if constexpr (E == Epilogue::attention_inputs) {
        const int half = a.head_dim / 2, p = tile * 8 + g, head = p / half, i = p % half;
        if (head >= a.heads + 2 * a.kv_heads) continue;
        const int proj = head < a.heads ? 0 : head < a.heads + a.kv_heads ? 1 : 2;
        const int local = head - (proj == 0 ? 0 : proj == 1 ? a.heads : a.heads + a.kv_heads);
        const int row0 = local * a.head_dim + i, row1 = row0 + half;
        const float v0 = round_bf16(s0 + bias0), v1 = round_bf16(s1 + bias1);  // the projection's output, as stored
        const int64_t pool_row = int64_t(o.slot[nt][j]) * a.kv_heads * a.head_dim;
        if (proj == 2) {
          a.v_pool[pool_row + row0] = __float2bfloat16(v0);
          a.v_pool[pool_row + row1] = __float2bfloat16(v1);
          continue;
        }
        // f32, as transformers computes it
        const float inv_freq = float(exp(-a.log_theta * double(2 * i) / double(a.head_dim)));
        float sn, cs;
        sincosf(float(o.pos[nt][j]) * inv_freq, &sn, &cs);
        bf16* dst = proj == 0 ? a.out + int64_t(n) * a.heads * a.head_dim : a.k_pool + pool_row;
        dst[row0] = __float2bfloat16(v0 * cs - v1 * sn);
        dst[row1] = __float2bfloat16(v1 * cs + v0 * sn);
      } else if constexpr (E == Epilogue::gate_up) {
        const int p = tile * 8 + g;
        if (p >= a.out_rows) continue;
        const float gate = round_bf16(s0), up = round_bf16(s1);
        a.out[int64_t(n) * a.out_rows + p] = __float2bfloat16(gate / (1.0f + __expf(-gate)) * up);
      } else {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int r = tile * 16 + g + 8 * h;
          if (r >= a.out_rows) continue;
          const float s = h ? s1 : s0;
          const int64_t at = int64_t(n) * a.out_rows + r;
          if constexpr (E == Epilogue::residual) a.out[at] = __float2bfloat16(o.residual[nt][j][h] + round_bf16(s));
          else a.out_f32[at] = s;
        }
      }
    }
}

template <Epilogue E, int NT>
__global__ void __launch_bounds__(kMaxThreads) fused_rows_kernel(const Params a) {
  chain_release();
  constexpr int H = kHalf<NT>;
  const int warps = int(blockDim.x) / 32, warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
  const int g = lane >> 2, t = lane & 3, tile = int(blockIdx.x);
  const int kb0 = warp * a.warp_kb, kb1 = min(kb0 + a.warp_kb, a.k / kBlockK);
  const TileRow row0 = tile_row<E>(a, tile, g), row1 = tile_row<E>(a, tile, g + 8);
  const uint4* r0 = reinterpret_cast<const uint4*>(row0.w) + t;
  const uint4* r1 = reinterpret_cast<const uint4*>(row1.w) + t;

  float acc[NT][4] = {};
  float squares[NT] = {};  // with a norm: Σx² of token row nt·8 + g over the lane's inputs
  // Two sets of H k blocks of the lane's two rows, one loading while the other is multiplied.
  uint4 w0[2][H], w1[2][H];
  // Set `set`: k blocks [from, from + H) below kb1, streamed.
  const auto load = [&](int set, int from) {
#pragma unroll
    for (int u = 0; u < H; ++u) {
      const bool in = from + u < kb1;
      w0[set][u] = in ? __ldcs(r0 + (from + u) * 4) : make_uint4(0, 0, 0, 0);
      w1[set][u] = in ? __ldcs(r1 + (from + u) * 4) : make_uint4(0, 0, 0, 0);
    }
  };
  const uint4* x = reinterpret_cast<const uint4*>(a.x) + t;
  const uint4* gw = reinterpret_cast<const uint4*>(a.norm) + t;
  const int row_chunks = a.k / 8;
  // Set `set` (k blocks [from, from + H) below kb1) times the input rows, read through L1 (the block's other warps
  // and the SM's other blocks read the same rows).
  const auto multiply = [&](int set, int from) {
#pragma unroll
    for (int u = 0; u < H; ++u) {
      if (from + u >= kb1) break;
      const uint4 gv = a.norm ? __ldg(gw + (from + u) * 4) : make_uint4(0, 0, 0, 0);
      uint4 b[NT];
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        const int n = nt * 8 + g;
        b[nt] = n < a.rows ? __ldg(x + int64_t(n) * row_chunks + (from + u) * 4) : make_uint4(0, 0, 0, 0);
      }
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        if (a.norm) {
          squares[nt] = sum_squares(b[nt], squares[nt]);
          b[nt] = times(b[nt], gv);
        }
        mma(acc[nt], w0[set][u].x, w1[set][u].x, w0[set][u].y, w1[set][u].y, b[nt].x, b[nt].y);
        mma(acc[nt], w0[set][u].z, w1[set][u].z, w0[set][u].w, w1[set][u].w, b[nt].z, b[nt].w);
      }
    }
  };
  load(0, kb0);
  chain_wait();
  // The epilogue's operands now (warp 0 runs the epilogue), so that their loads overlap the weights'.
  Operands<E, NT> o;
  if (warp == 0) o = operands_of<E, NT>(a, tile, g, t);
  for (int base = kb0; base < kb1; base += 2 * H) {
    load(1, base + H);
    multiply(0, base);
    load(0, base + 2 * H);
    multiply(1, base + H);
  }
  // Σx² of token row `lane` over this warp's k: the four lanes of a group saw token row nt·8 + g's inputs.
  float sum = 0.0f;
  if (a.norm)
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      float v = squares[nt];
      v += __shfl_xor_sync(0xffffffffu, v, 1);
      v += __shfl_xor_sync(0xffffffffu, v, 2);
      v = __shfl_sync(0xffffffffu, v, (lane % 8) * 4);
      if (lane / 8 == nt) sum = v;
    }

  if (warps > 1) {  // the other warps' sums (and sums of squares) through shared memory, added by warp 0
    extern __shared__ float4 parts[];  // [warps - 1][NT][32], then [warps - 1][32] floats of Σx²
    float* part_sums = reinterpret_cast<float*>(parts + (warps - 1) * NT * 32);
    if (warp > 0) {
#pragma unroll
      for (int nt = 0; nt < NT; ++nt)
        parts[((warp - 1) * NT + nt) * 32 + lane] = make_float4(acc[nt][0], acc[nt][1], acc[nt][2], acc[nt][3]);
      part_sums[(warp - 1) * 32 + lane] = sum;
    }
    __syncthreads();
    if (warp > 0) return;
    for (int w = 0; w < warps - 1; ++w) {
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        const float4 v = parts[(w * NT + nt) * 32 + lane];
        acc[nt][0] += v.x, acc[nt][1] += v.y, acc[nt][2] += v.z, acc[nt][3] += v.w;
      }
      sum += part_sums[w * 32 + lane];
    }
  }
  if (a.norm) {  // the norm's scale of each token row, applied to the products
    const float inv = rsqrtf(sum / float(a.k) + a.eps);
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const float row_inv = __shfl_sync(0xffffffffu, inv, nt * 8 + 2 * t + j);
        acc[nt][j] *= row_inv;
        acc[nt][2 + j] *= row_inv;
      }
  }
  finish<E, NT>(a, tile, g, t, acc, o);
}

// The shared memory of a block of `warps` warps: the other warps' partial sums and sums of squares. At most 32 KB,
// under the 48 KB any kernel may take without opting in: no kernel attribute is ever set, so none can be lowered
// under what a graph recorded earlier launches.
template <int NT>
constexpr size_t shared_bytes(int warps) {
  return size_t(warps - 1) * 32 * (NT * sizeof(float4) + sizeof(float));
}
static_assert(shared_bytes<4>(kMaxWarps) <= 48 * 1024, "the partial sums fit the default shared memory");

// The kernel for NT·8 token rows, in blocks of as many warps as keep every tile's block resident at once.
template <Epilogue E, int NT>
void launch_rows(const Params& a, const FusedRowsInput& in, cudaStream_t stream) {
  const auto kernel = fused_rows_kernel<E, NT>;
  // Warps per block: the most (up to kMaxWarps, one k block each at least) with which every tile's block is
  // resident at once, as the occupancy calculator counts blocks of that size; found once per kernel and shape.
  static thread_local std::map<std::pair<int, int>, int> chosen;  // (tiles, k blocks) -> warps
  const int kblocks = a.k / kBlockK;
  int& warps = chosen[{a.tiles, kblocks}];
  if (warps == 0) {
    const int sms = sm_count();
    warps = 1;
    for (int w = std::min(kMaxWarps, kblocks); w > 1; --w) {
      int per_sm = 0;
      check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, w * 32, shared_bytes<NT>(w)),
            "fused rows occupancy");
      if (int64_t(per_sm) * sms >= a.tiles) {
        warps = w;
        break;
      }
    }
  }
  Params p = a;
  p.warp_kb = (kblocks + warps - 1) / warps;
  const int used = (kblocks + p.warp_kb - 1) / p.warp_kb;  // none without k blocks
  check(launch_kernel(kernel, dim3(unsigned(a.tiles)), dim3(unsigned(used * 32)), shared_bytes<NT>(used), stream,
                      in.chained, p),
        "fused rows launch");
}

template <Epilogue E>
void launch(Params& a, const FusedRowsInput& in, cudaStream_t stream) {
  a.x = static_cast<const bf16*>(in.x);
  a.norm = static_cast<const bf16*>(in.norm);
  a.eps = in.eps;
  a.rows = int(in.rows);
  a.k = int(in.k);
  if (a.rows <= 8) launch_rows<E, 1>(a, in, stream);
  else if (a.rows <= 16) launch_rows<E, 2>(a, in, stream);
  else launch_rows<E, 4>(a, in, stream);
}

}  // namespace

}  // namespace fused_rows

using fused_rows::Epilogue;
using fused_rows::Params;
using bf16 = __nv_bfloat16;

void fused_rows_attention_inputs(const FusedRowsInput& in, const RowsQkv& p, cudaStream_t stream) {
  Params a;
  for (int s = 0; s < 3; ++s) {
    a.w[s] = static_cast<const bf16*>(p.w[s]);
    a.bias[s] = static_cast<const bf16*>(p.bias[s]);
  }
  a.heads = int(p.heads);
  a.kv_heads = int(p.kv_heads);
  a.head_dim = int(p.head_dim);
  a.tiles = int((p.heads + 2 * p.kv_heads) * (p.head_dim / 2) / 8);
  a.positions = p.positions;
  a.slots = p.slots;
  a.log_theta = std::log(p.theta);
  a.out = static_cast<bf16*>(p.q);
  a.k_pool = static_cast<bf16*>(p.k_pool);
  a.v_pool = static_cast<bf16*>(p.v_pool);
  fused_rows::launch<Epilogue::attention_inputs>(a, in, stream);
}

void fused_rows_gate_up(const FusedRowsInput& in, const void* w_gate, const void* w_up, int64_t ffn, void* h,
                        cudaStream_t stream) {
  Params a;
  a.w[0] = static_cast<const bf16*>(w_gate);
  a.w[1] = static_cast<const bf16*>(w_up);
  a.out_rows = int(ffn);
  a.tiles = int((ffn + 7) / 8);
  a.out = static_cast<bf16*>(h);
  fused_rows::launch<Epilogue::gate_up>(a, in, stream);
}

void fused_rows_residual(const FusedRowsInput& in, const void* w, int64_t out_rows, void* residual,
                         cudaStream_t stream) {
  Params a;
  a.w[0] = static_cast<const bf16*>(w);
  a.out_rows = int(out_rows);
  a.tiles = int((out_rows + 15) / 16);
  a.out = static_cast<bf16*>(residual);
  fused_rows::launch<Epilogue::residual>(a, in, stream);
}

void fused_rows_f32(const FusedRowsInput& in, const void* w, int64_t out_rows, float* out,
                    cudaStream_t stream) {
  Params a;
  a.w[0] = static_cast<const bf16*>(w);
  a.out_rows = int(out_rows);
  a.tiles = int((out_rows + 15) / 16);
  a.out_f32 = out;
  fused_rows::launch<Epilogue::f32>(a, in, stream);
}

}  // namespace wick::cuda
