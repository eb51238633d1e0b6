// The fused few-row kernels (fused_rows.h): a decode step of up to 32 sequences reads each weight once, as the
// one-token kernels do, and multiplies it on the tensor cores (mma.sync m16n8k16, bf16 in, f32 accumulate).
//
// A warp owns a tile of 16 weight rows: rows 0-7 and 8-15 of the tile are the two members of 8 pairs — the halves
// (i, i + d/2) of a rotated head, the same row of gate and up, or (residual, f32) 16 neighbouring rows — so that
// each lane ends up holding both members of a pair for the same token rows, and the epilogue needs no exchange.
// Each lane streams 16 bytes of two weight rows per 32 inputs (the k order inside an mma is free, as long as the
// input rows use the same one: a lane's 8 consecutive weights feed both k16 steps) with cp.async into a ring of
// shared memory of its own (kStages k blocks: three in flight while one is multiplied, 3 KB a warp, without holding
// a register), so that an SM keeps enough bytes in flight to stream at the memory's rate. The input rows (a few KB,
// read by every warp) come through L1.
//
// The RMSNorm before a projection rides along: the products are of x ⊙ g, and each token row's sum of squares is
// gathered from the same loads of x, so the scale 1/√(mean(x²) + eps) is applied to the sums in the epilogue.
//
// The warps of a block split a tile's k between them and add their sums up in shared memory (each in its own ring,
// done with by then), after which the first warp runs the epilogue. A launch of fewer tiles than SMs spreads each
// tile's k over a thread block cluster of blocks, enough to bring the blocks to the SM count, whose sums go into the
// first block's shared memory (distributed shared memory, behind a cluster barrier): on an H100/H200 with the 0.5B
// shape, clusters of 3 for the 56 tiles of o_proj and down_proj, of 2 for the 72 of q/k/v. The launch picks the
// most warps per block that still lets every block be resident at once (one wave: a second wave would double the
// latency, which is what a step of few rows costs). Nothing crosses clusters, so there are no partial sums parked
// in global memory, no fences and no counters.
//
// Chaining (chain.cuh): the first weight loads are issued before chain_wait(); the input rows and the epilogue's
// operands (positions and pool rows, or the residual stream) are touched only after it — the operands at once, so
// that their loads overlap the weights' instead of following the sums.
#include "backend/cuda/fused_rows.h"

#include <cooperative_groups.h>
#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <utility>

#include "backend/cuda/async_copy.cuh"
#include "backend/cuda/chain.cuh"
#include "backend/cuda/cuda_check.h"

namespace wick::cuda {

namespace fused_rows {

namespace {

namespace cg = cooperative_groups;
using bf16 = __nv_bfloat16;
constexpr int kMaxWarps = 16;  // per block: the warps over one tile's k
constexpr int kMaxThreads = kMaxWarps * 32;

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
  int cluster = 1;   // blocks over one tile (a thread block cluster)
  int part_kb = 0;   // k blocks of each warp of a cluster
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

// The epilogue's operands of the lane's token rows — positions and pool rows (and the pair's biases and frequency), or
// the residual stream's values — loaded all at once before the first store (a store may alias them, so loads left
// among the stores would each wait out the one before), and before the k loop, so that they arrive with the weights.
template <Epilogue E, int NT>
struct Operands {
  int pos[NT][2] = {}, slot[NT][2] = {};
  float residual[NT][2][2] = {};
  float bias0 = 0.0f, bias1 = 0.0f;  // attention inputs: the lane's pair's biases
  float inv_freq = 0.0f;             //   and its rotation's frequency
};

template <Epilogue E, int NT>
__device__ Operands<E, NT> operands_of(const Params& a, int tile, int g, int t) {
  Operands<E, NT> o;
  if constexpr (E == Epilogue::attention_inputs) {
    const int half = a.head_dim / 2, p = tile * 8 + g, head = p / half, i = p % half;
    const int proj = head < a.heads ? 0 : head < a.heads + a.kv_heads ? 1 : 2;
    const int local = head - (proj == 0 ? 0 : proj == 1 ? a.heads : a.heads + a.kv_heads);
    if (head < a.heads + 2 * a.kv_heads && a.bias[proj]) {
      o.bias0 = __bfloat162float(a.bias[proj][local * a.head_dim + i]);
      o.bias1 = __bfloat162float(a.bias[proj][local * a.head_dim + i + half]);
    }
    o.inv_freq = float(exp(-a.log_theta * double(2 * i) / double(a.head_dim)));  // f32, as transformers computes it
  }
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
        const float v0 = round_bf16(s0 + o.bias0), v1 = round_bf16(s1 + o.bias1);  // the projection's output, stored
        const int64_t pool_row = int64_t(o.slot[nt][j]) * a.kv_heads * a.head_dim;
        if (proj == 2) {
          a.v_pool[pool_row + row0] = __float2bfloat16(v0);
          a.v_pool[pool_row + row1] = __float2bfloat16(v1);
          continue;
        }
        float sn, cs;
        sincosf(float(o.pos[nt][j]) * o.inv_freq, &sn, &cs);
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

// Cluster barriers (Hopper): arrive without waiting, and wait for the phase this thread arrived at. Every thread of
// every block of a cluster launch passes both phases of the kernel, so none of them exits early.
__device__ __forceinline__ void cluster_arrive(bool release) {
  if (release) asm volatile("barrier.cluster.arrive.release;\n" ::: "memory");
  else asm volatile("barrier.cluster.arrive.relaxed;\n" ::: "memory");
}
__device__ __forceinline__ void cluster_wait() { asm volatile("barrier.cluster.wait.acquire;\n" ::: "memory"); }

// What one warp's part of a tile hands to the warp that finishes it: its sums and its token rows' sums of squares.
template <int NT>
constexpr int kPartBytes = NT * 32 * int(sizeof(float4)) + 32 * int(sizeof(float));

template <Epilogue E, int NT, int S>
__global__ void __launch_bounds__(kMaxThreads) fused_rows_kernel(const Params a) {
  chain_release();
  const bool clustered = a.cluster > 1;
  if (clustered) cluster_arrive(false);  // phase 1: this block has started (its shared memory exists)
  const int warps = int(blockDim.x) / 32, warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
  const int g = lane >> 2, t = lane & 3;
  const int rank = clustered ? int(cg::this_cluster().block_rank()) : 0;
  const int tile = int(blockIdx.x) / a.cluster, part = rank * warps + warp;
  const int kb0 = min(part * a.part_kb, a.k / kBlockK), kb1 = min(kb0 + a.part_kb, a.k / kBlockK);
  const TileRow row0 = tile_row<E>(a, tile, g), row1 = tile_row<E>(a, tile, g + 8);
  const uint4* r0 = reinterpret_cast<const uint4*>(row0.w) + t;
  const uint4* r1 = reinterpret_cast<const uint4*>(row1.w) + t;

  // The warp's ring of S k blocks in shared memory: [S][the two rows][32 lanes] of 16 bytes, each lane's own (it
  // copies and reads only its slots, so no barrier is needed, and 16-byte strides keep the banks apart).
  extern __shared__ uint4 shared[];
  uint4* ring = shared + warp * S * 64;
  // Starts the copy of k block kb (if the warp has it) and closes a group, one per call, so that group counts are
  // k-block counts.
  const auto issue = [&](int kb) {
    if (kb < kb1) {
      uint4* slot = ring + ((kb - kb0) % S) * 64;
      cp_async16(slot + lane, r0 + kb * 4, true);
      cp_async16(slot + 32 + lane, r1 + kb * 4, true);
    }
    cp_async_commit();
  };
#pragma unroll
  for (int s = 0; s < S - 1; ++s) issue(kb0 + s);
  chain_wait();
  // The epilogue's operands now (warp 0 of the cluster's first block runs the epilogue), so that their loads overlap
  // the weights'.
  Operands<E, NT> o;
  if (warp == 0 && rank == 0) o = operands_of<E, NT>(a, tile, g, t);

  float acc[NT][4] = {};
  float squares[NT] = {};  // with a norm: Σx² of token row nt·8 + g over the lane's inputs
  const uint4* x = reinterpret_cast<const uint4*>(a.x) + t;
  const uint4* gw = reinterpret_cast<const uint4*>(a.norm) + t;
  const int row_chunks = a.k / 8;
  for (int kb = kb0; kb < kb1; ++kb) {
    issue(kb + S - 1);
    // The input rows through L1 (the block's other warps and the SM's other blocks read the same rows).
    const uint4 gv = a.norm ? __ldg(gw + kb * 4) : make_uint4(0, 0, 0, 0);
    uint4 b[NT];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      const int n = nt * 8 + g;
      b[nt] = n < a.rows ? __ldg(x + int64_t(n) * row_chunks + kb * 4) : make_uint4(0, 0, 0, 0);
    }
    cp_async_wait<S - 1>();  // k block kb has landed
    const uint4* slot = ring + ((kb - kb0) % S) * 64;
    const uint4 w0 = slot[lane], w1 = slot[32 + lane];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      if (a.norm) {
        squares[nt] = sum_squares(b[nt], squares[nt]);
        b[nt] = times(b[nt], gv);
      }
      mma(acc[nt], w0.x, w1.x, w0.y, w1.y, b[nt].x, b[nt].y);
      mma(acc[nt], w0.z, w1.z, w0.w, w1.w, b[nt].z, b[nt].w);
    }
  }
  cp_async_wait<0>();  // none of the warp's copies is left in flight over the ring the sums reuse
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

  // A part's sums in a slot of kPartBytes: [NT][32] float4, then [32] floats of Σx².
  const auto store_part = [&](unsigned char* slot) {
    float4* sums = reinterpret_cast<float4*>(slot);
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) sums[nt * 32 + lane] = make_float4(acc[nt][0], acc[nt][1], acc[nt][2], acc[nt][3]);
    reinterpret_cast<float*>(sums + NT * 32)[lane] = sum;
  };
  const auto add_part = [&](const unsigned char* slot) {
    const float4* sums = reinterpret_cast<const float4*>(slot);
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      const float4 v = sums[nt * 32 + lane];
      acc[nt][0] += v.x, acc[nt][1] += v.y, acc[nt][2] += v.z, acc[nt][3] += v.w;
    }
    sum += reinterpret_cast<const float*>(sums + NT * 32)[lane];
  };
  auto* bytes = reinterpret_cast<unsigned char*>(shared);
  if (warps > 1) {  // the other warps' sums through their own rings (done with), added by warp 0
    if (warp > 0) store_part(bytes + warp * S * 1024);
    __syncthreads();
    if (warp == 0)
      for (int w = 1; w < warps; ++w) add_part(bytes + w * S * 1024);
  }
  if (clustered) {  // the other blocks' sums into the first block's inbox (past the rings), added by its warp 0
    unsigned char* inbox = bytes + warps * S * 1024;
    cluster_wait();  // phase 1: every block of the cluster has started
    if (rank > 0 && warp == 0) store_part(cg::this_cluster().map_shared_rank(inbox, 0) + (rank - 1) * kPartBytes<NT>);
    cluster_arrive(true);
    cluster_wait();  // phase 2: the inbox is full
    if (rank == 0 && warp == 0)
      for (int r = 1; r < a.cluster; ++r) add_part(inbox + (r - 1) * kPartBytes<NT>);
  }
  if (warp > 0 || rank > 0) return;
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

// Stages of each warp's ring: S − 1 k blocks (1 KB each per warp) in flight while one is multiplied.
constexpr int kStages = 4;
static_assert(4 * 1024 >= kPartBytes<4>, "a warp's ring (4 stages at least) holds its part of the sums");

// The shared memory of a block of `warps` warps in clusters of `cluster` blocks: the warps' rings, then the inbox of
// the other blocks' sums.
template <int NT, int S>
constexpr size_t shared_bytes(int warps, int cluster) {
  return size_t(warps) * S * 1024 + size_t(cluster - 1) * kPartBytes<NT>;
}

// How a launch spreads a tile's k: over `cluster` blocks of `warps` warps each.
struct Split {
  int cluster = 0, warps = 0;
};

// The kernel for NT·8 token rows. A launch with fewer tiles than SMs spreads each tile over a cluster of blocks
// (as many as bring the blocks to the SM count), so that every SM streams weights; the blocks take the most warps
// (up to kMaxWarps, one k block each at least) with which every block is resident at once (one wave: a second wave
// would double the latency, which is what a step of few rows costs), as the occupancy calculator counts them.
template <Epilogue E, int NT, int S>
void launch_rows(const Params& a, const FusedRowsInput& in, cudaStream_t stream) {
  const auto kernel = fused_rows_kernel<E, NT, S>;
  const int kblocks = a.k / kBlockK;
  static thread_local std::map<std::pair<int, int>, Split> chosen;  // (tiles, k blocks) -> split
  Split& split = chosen[{a.tiles, kblocks}];
  if (split.warps == 0) {
    int device = 0, optin = 0;
    check(cudaGetDevice(&device), "cudaGetDevice");
    check(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device), "shared memory limit");
    // The same value on every call, so no launch a graph recorded earlier is ever refused its shared memory.
    check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, optin), "fused rows shared memory");
    const int sms = sm_count();
    int clusters_ok = 0;
    check(cudaDeviceGetAttribute(&clusters_ok, cudaDevAttrClusterLaunch, device), "cluster launch support");
    int cluster = clusters_ok ? std::clamp((sms + a.tiles - 1) / a.tiles, 1, std::min(8, kblocks)) : 1;
    split = {cluster, 1};
    for (int w = std::min(kMaxWarps, (kblocks + cluster - 1) / cluster); w > 1; --w) {
      const size_t bytes = shared_bytes<NT, S>(w, cluster);
      if (bytes > size_t(optin)) continue;
      // Blocks of w warps that fit an SM at once, over every SM, in clusters: a property of the kernel and the chip's
      // SM, the same on every card of a kind. (cudaOccupancyMaxActiveClusters also weighs how clusters pack into the
      // card's GPCs, whose SM counts differ from card to card: one H100 answered 7 warps for q/k/v where others
      // answered 10, and that card ran 32-row steps 20 % slower. With two or three blocks an SM, clusters of 2 and 3
      // blocks fit the GPCs however their SMs are counted.)
      int per_sm = 0;
      check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, w * 32, bytes), "fused rows occupancy");
      if (per_sm * sms / cluster >= a.tiles) {
        split.warps = w;
        break;
      }
    }
  }
  Params p = a;
  p.cluster = split.cluster;
  p.part_kb = (kblocks + split.cluster * split.warps - 1) / (split.cluster * split.warps);
  // The warps that have k blocks (all but the last block's tail), at least one.
  const int parts = std::max(1, (kblocks + p.part_kb - 1) / p.part_kb);
  const int warps = (parts + split.cluster - 1) / split.cluster;
  check(launch_kernel(kernel, dim3(unsigned(a.tiles * split.cluster)), dim3(unsigned(warps * 32)),
                      shared_bytes<NT, S>(warps, split.cluster), stream, in.chained, p, split.cluster),
        "fused rows launch");
}

template <Epilogue E>
void launch(Params& a, const FusedRowsInput& in, cudaStream_t stream) {
  a.x = static_cast<const bf16*>(in.x);
  a.norm = static_cast<const bf16*>(in.norm);
  a.eps = in.eps;
  a.rows = int(in.rows);
  a.k = int(in.k);
  if (a.rows <= 8) launch_rows<E, 1, kStages>(a, in, stream);
  else if (a.rows <= 16) launch_rows<E, 2, kStages>(a, in, stream);
  else launch_rows<E, 4, kStages>(a, in, stream);
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
