// Causal grouped-query attention for one sequence, in two kernels picked by the number of queries:
//  - decode (a few queries): split-K "flash decoding". The visible keys are cut into chunks spread over blocks;
//    a block takes one chunk for one kv head and (up to eight of) the query heads that share it, so each K/V
//    load serves the whole group, and the last block of a (query, head slice) to finish merges the chunks'
//    partial softmaxes.
//  - prefill: tiled flash attention on tensor cores (mma.sync m16n8k16, bf16 in, f32 accumulate). A block owns
//    64 queries of one head and walks 64-key tiles, staged in shared memory by cp.async, with an online softmax.
// Both read the positions on the device, so the launch depends only on host-known shapes and a captured graph
// replays at any position. The decode kernel is launched chained (chain.cuh): the next kernel's weight loads
// start while it runs.
#include <cuda_bf16.h>

#include <algorithm>
#include <climits>
#include <cmath>

#include "backend/cuda/async_copy.cuh"
#include "backend/cuda/chain.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernels.h"
#include "backend/cuda/reduce.cuh"

namespace wick::cuda {

namespace {

using bf16 = __nv_bfloat16;
constexpr float kLog2e = 1.4426950408889634f;  // scores are kept in log2 units so exp2f does the softmax
constexpr int64_t kDecodeQueries = 4;          // up to this many queries take the split-K kernel

__host__ __device__ constexpr int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Kernels above 48 KB of dynamic shared memory must opt in, once per process.
template <auto kernel>
void allow_shared_bytes(size_t bytes) {
  [[maybe_unused]] static const cudaError_t once =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
}

// ---- decode: split-K ------------------------------------------------------------------------------------------

constexpr int kSplitWarps = 8, kSplitThreads = kSplitWarps * 32;
constexpr int kMaxGroup = kSplitWarps;  // query heads per block; warp w keeps head w's running max and sum
constexpr int kStages = 3;              // tiles in flight: two loading while one is used
constexpr int64_t kMinChunk = 64;       // keys per block at least, so short contexts do not pay for a merge
constexpr int64_t kMaxSplits = 64;      // bounds the merge, which one block reads alone
// The workspace starts with the tickets (zero between launches), then the chunks' partial results.
constexpr int64_t kTicketSlots = 16384;
constexpr size_t kTicketBytes = kTicketSlots * sizeof(unsigned);

struct SplitParams {
  const bf16 *q, *k, *v;
  const int32_t* positions;
  bf16* out;
  int64_t capacity;
  int heads, kv_heads;
  int group;          // query heads per kv head
  int slice_heads;    // query heads per block (≤ kMaxGroup); a group is cut into slices_per_kv slices
  int slices_per_kv;
  int splits;         // blocks per (query, slice); a chunk is max(kMinChunk, ceil(visible / splits)) keys
  float scale_log2;
  unsigned* tickets;  // [queries, kv_heads · slices_per_kv]: chunks finished; the merging block resets it
  float* acc;         // [queries, heads, splits, D]: each chunk's unnormalised output
  float2* ml;         // [queries, heads, splits]: each chunk's running max and sum
};

template <int D>
__host__ __device__ constexpr int split_tile_keys() {
  return D <= 128 ? 64 : 32;
}

template <int D>
constexpr size_t split_shared_bytes() {  // q, then kStages tiles of K and V
  return (kMaxGroup * D + kStages * 2 * split_tile_keys<D>() * (D + 8)) * sizeof(bf16);
}

// Eight bf16 from a 16-byte aligned shared address, as f32.
__device__ void load8(const bf16* at, float (&f)[8]) {
  const uint4 raw = *reinterpret_cast<const uint4*>(at);
  const __nv_bfloat162* pairs = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const float2 x = __bfloat1622float2(pairs[j]);
    f[2 * j] = x.x, f[2 * j + 1] = x.y;
  }
}

// Grid (query, slice, split). The block's chunk goes through shared memory T keys at a time, later tiles'
// cp.async in flight while the current one is used: a thread scores one key against several heads (reusing
// the key from registers), each head's warp updates its running max and sum, then every thread accumulates
// P·V into its own output column pairs.
template <int D>
__global__ void __launch_bounds__(kSplitThreads) split_kernel(SplitParams p) {
  constexpr int T = split_tile_keys<D>();
  constexpr int kRow = D + 8;  // padding: 16-byte reads of 8 consecutive rows fall in distinct banks
  constexpr int kHeadSets = kSplitThreads / T;
  constexpr int kHeadsPerThread = kMaxGroup / kHeadSets;
  constexpr int kPairs = int(ceil_div(kMaxGroup * D / 2, kSplitThreads));  // output column pairs per thread
  extern __shared__ uint4 shared[];
  bf16* qs = reinterpret_cast<bf16*>(shared);  // [kMaxGroup][D]
  bf16* stages = qs + kMaxGroup * D;           // [kStages][K, V][T][kRow]
  __shared__ float ps[kMaxGroup][T];
  __shared__ float rescale[kMaxGroup], inv_sum[kMaxGroup];
  __shared__ float weight[kMaxGroup][kMaxSplits];
  __shared__ bool last;

  chain_release();
  chain_wait();  // everything this kernel reads is the previous kernels' output (chain.cuh)
  const int i = blockIdx.x, slice = blockIdx.y, split = blockIdx.z;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int kvh = slice / p.slices_per_kv;
  const int h0 = kvh * p.group + slice % p.slices_per_kv * p.slice_heads;
  const int G = min(p.slice_heads, (kvh + 1) * p.group - h0);
  const int64_t visible = min(int64_t(p.positions[i]) + 1, p.capacity);
  const int64_t chunk = max(kMinChunk, ceil_div(visible, p.splits));
  const int64_t begin = split * chunk, end = min(begin + chunk, visible);
  if (begin >= end) return;  // past the visible keys: the merge counts only chunks that hold keys
  const int active = int(ceil_div(visible, chunk));
  const int64_t row = int64_t(i) * p.heads + h0;  // (query, head) row of this block's first head

  // Every step commits one group (empty past the chunk), so waiting for all but kStages - 1 groups means
  // the step's own tile has landed.
  const auto stage_tile = [&](int64_t step) {
    const int64_t t0 = begin + step * T;
    bf16* ks = stages + step % kStages * 2 * T * kRow;
    bf16* vs = ks + T * kRow;
    if (t0 < end) {
      for (int c = tid; c < T * D / 8; c += kSplitThreads) {
        const int r = c / (D / 8), col = c % (D / 8) * 8;
        const bool valid = t0 + r < end;  // rows past the chunk are zeros, never used
        const int64_t at = valid ? ((t0 + r) * p.kv_heads + kvh) * D + col : 0;
        cp_async16(ks + r * kRow + col, p.k + at, valid);
        cp_async16(vs + r * kRow + col, p.v + at, valid);
      }
    }
    cp_async_commit();
  };
  for (int c = tid; c < G * D / 8; c += kSplitThreads) cp_async16(qs + c * 8, p.q + row * D + c * 8, true);
  for (int step = 0; step < kStages - 1; ++step) stage_tile(step);  // q travels in the first tile's group

  float m = -INFINITY, l = 0.0f;  // head `warp`
  float2 o[kPairs] = {};
  const int64_t steps = ceil_div(end - begin, T);
  for (int64_t step = 0; step < steps; ++step) {
    stage_tile(step + kStages - 1);
    cp_async_wait<kStages - 1>();
    __syncthreads();
    const bf16* ks = stages + step % kStages * 2 * T * kRow;
    const bf16* vs = ks + T * kRow;
    const int rows = int(min(int64_t(T), end - begin - step * T));

    const int t = tid % T;
    float s[kHeadsPerThread] = {};
    if (t < rows) {
      for (int e = 0; e < D; e += 8) {
        float kf[8];
        load8(ks + t * kRow + e, kf);
#pragma unroll
        for (int r = 0; r < kHeadsPerThread; ++r) {
          const int g = tid / T + r * kHeadSets;
          if (g >= G) continue;
          float qf[8];
          load8(qs + g * D + e, qf);
#pragma unroll
          for (int j = 0; j < 8; ++j) s[r] += qf[j] * kf[j];
        }
      }
    }
#pragma unroll
    for (int r = 0; r < kHeadsPerThread; ++r) {
      const int g = tid / T + r * kHeadSets;
      if (g < G) ps[g][t] = t < rows ? s[r] * p.scale_log2 : -INFINITY;
    }
    __syncthreads();

    if (warp < G) {
      float mx = -INFINITY;
      for (int j = lane; j < T; j += 32) mx = fmaxf(mx, ps[warp][j]);
      const float m_new = fmaxf(m, warp_max(mx));  // finite: the tile holds at least one key
      float sum = 0.0f;
      for (int j = lane; j < T; j += 32) sum += ps[warp][j] = exp2f(ps[warp][j] - m_new);
      const float c = exp2f(m - m_new);
      l = l * c + warp_sum(sum);
      m = m_new;
      if (lane == 0) rescale[warp] = c;
    }
    __syncthreads();

#pragma unroll
    for (int r = 0; r < kPairs; ++r) {
      const int x = tid + r * kSplitThreads, g = x / (D / 2), c = x % (D / 2);
      if (g >= G) continue;
      float2 a = o[r];
      a.x *= rescale[g], a.y *= rescale[g];
      for (int j = 0; j < rows; ++j) {
        const float pj = ps[g][j];
        const float2 vj = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(vs + j * kRow + 2 * c));
        a.x += pj * vj.x, a.y += pj * vj.y;
      }
      o[r] = a;
    }
    __syncthreads();  // the next step stages into the buffer just read
  }

  if (active == 1) {  // the only chunk: normalise and write the output directly
    if (warp < G && lane == 0) inv_sum[warp] = 1.0f / l;
    __syncthreads();
#pragma unroll
    for (int r = 0; r < kPairs; ++r) {
      const int x = tid + r * kSplitThreads, g = x / (D / 2), c = x % (D / 2);
      if (g < G)
        reinterpret_cast<__nv_bfloat162*>(p.out + (row + g) * D)[c] =
            __floats2bfloat162_rn(o[r].x * inv_sum[g], o[r].y * inv_sum[g]);
    }
    return;
  }

  if (warp < G && lane == 0) p.ml[(row + warp) * p.splits + split] = make_float2(m, l);
#pragma unroll
  for (int r = 0; r < kPairs; ++r) {
    const int x = tid + r * kSplitThreads, g = x / (D / 2), c = x % (D / 2);
    if (g < G) reinterpret_cast<float2*>(p.acc + ((row + g) * p.splits + split) * D)[c] = o[r];
  }
  // Publish the partials, then take a ticket: the block that takes the last one merges them all.
  __threadfence();
  __syncthreads();
  if (tid == 0) {
    unsigned* ticket = p.tickets + int64_t(i) * gridDim.y + slice;
    last = atomicAdd(ticket, 1u) == unsigned(active - 1);
    if (last) atomicExch(ticket, 0u);  // ready for the next launch or graph replay
  }
  __syncthreads();
  if (!last) return;
  __threadfence();

  // Partials come from other blocks: __ldcg reads them from L2, past this SM's L1.
  if (warp < G) {
    const float2* part = p.ml + (row + warp) * p.splits;
    float2 mine[kMaxSplits / 32];
    float mx = -INFINITY;
#pragma unroll
    for (int u = 0; u < kMaxSplits / 32; ++u) {
      const int sp = lane + 32 * u;
      mine[u] = sp < active ? __ldcg(&part[sp]) : make_float2(-INFINITY, 0.0f);
      mx = fmaxf(mx, mine[u].x);
    }
    mx = warp_max(mx);
    float total = 0.0f;
#pragma unroll
    for (int u = 0; u < kMaxSplits / 32; ++u) {
      const int sp = lane + 32 * u;
      if (sp >= active) continue;
      weight[warp][sp] = exp2f(mine[u].x - mx);
      total += weight[warp][sp] * mine[u].y;
    }
    total = warp_sum(total);
    if (lane == 0) inv_sum[warp] = 1.0f / total;
  }
  __syncthreads();
  constexpr int kBatch = 16;  // partials in flight per thread
  for (int x = tid; x < G * D / 4; x += kSplitThreads) {
    const int g = x / (D / 4), e = x % (D / 4) * 4;
    const float* a = p.acc + (row + g) * p.splits * D + e;
    float4 sum = {};
    for (int sp0 = 0; sp0 < active; sp0 += kBatch) {
      float4 part[kBatch];
#pragma unroll
      for (int u = 0; u < kBatch; ++u)
        part[u] = sp0 + u < active ? __ldcg(reinterpret_cast<const float4*>(a + int64_t(sp0 + u) * D)) : float4{};
#pragma unroll
      for (int u = 0; u < kBatch; ++u) {
        const float w = sp0 + u < active ? weight[g][sp0 + u] : 0.0f;
        sum.x += w * part[u].x, sum.y += w * part[u].y, sum.z += w * part[u].z, sum.w += w * part[u].w;
      }
    }
    __nv_bfloat162* o2 = reinterpret_cast<__nv_bfloat162*>(p.out + (row + g) * D + e);
    o2[0] = __floats2bfloat162_rn(sum.x * inv_sum[g], sum.y * inv_sum[g]);
    o2[1] = __floats2bfloat162_rn(sum.z * inv_sum[g], sum.w * inv_sum[g]);
  }
}

template <int D>
void launch_split(const void* q, const void* k, const void* v, const int32_t* positions, void* out,
                  const AttentionShape& s, cudaStream_t stream) {
  const int group = int(s.heads / s.kv_heads), slices_per_kv = int(ceil_div(group, kMaxGroup));
  const int64_t slices = s.kv_heads * slices_per_kv;
  // As many splits as the capacity can use, as far as the workspace holds their partials; one split (no
  // workspace at all) otherwise.
  int64_t splits = std::min(kMaxSplits, ceil_div(s.capacity, kMinChunk));
  const size_t split_bytes = size_t(s.queries * s.heads) * (D + 2) * sizeof(float);
  if (s.queries * slices > kTicketSlots || s.workspace == nullptr || s.workspace_bytes < kTicketBytes) splits = 1;
  else splits = std::min(splits, int64_t((s.workspace_bytes - kTicketBytes) / split_bytes));
  splits = std::max<int64_t>(splits, 1);
  auto* base = static_cast<unsigned char*>(s.workspace);
  auto* acc = reinterpret_cast<float*>(base + kTicketBytes);  // 16-byte aligned for the merge's float4 reads
  const SplitParams p{.q = static_cast<const bf16*>(q), .k = static_cast<const bf16*>(k),
                      .v = static_cast<const bf16*>(v), .positions = positions, .out = static_cast<bf16*>(out),
                      .capacity = s.capacity, .heads = int(s.heads), .kv_heads = int(s.kv_heads), .group = group,
                      .slice_heads = int(ceil_div(group, slices_per_kv)), .slices_per_kv = slices_per_kv,
                      .splits = int(splits), .scale_log2 = s.scale * kLog2e,
                      .tickets = reinterpret_cast<unsigned*>(base), .acc = acc,
                      .ml = reinterpret_cast<float2*>(acc + s.queries * s.heads * splits * D)};
  constexpr size_t bytes = split_shared_bytes<D>();
  allow_shared_bytes<split_kernel<D>>(bytes);
  const dim3 grid(unsigned(s.queries), unsigned(slices), unsigned(splits));
  check(launch_kernel(split_kernel<D>, grid, dim3(kSplitThreads), bytes, stream, true, p), "attention launch");
}

// ---- prefill: flash attention on tensor cores ----------------------------------------------------------------

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

template <int D>
void launch(const void* q, const void* k, const void* v, const int32_t* positions, void* out, const AttentionShape& s,
            cudaStream_t stream) {
  // The tensor-core kernel keeps D/8 + D/16 + 8 fragments per thread: up to d 128 they fit in registers.
  if constexpr (D <= 128) {
    if (s.queries > kDecodeQueries) {
      launch_prefill<D>(q, k, v, positions, out, s, stream);
      return;
    }
  }
  launch_split<D>(q, k, v, positions, out, s, stream);
}

}  // namespace

bool attention(const void* q, const void* k, const void* v, const int32_t* positions, void* out,
               const AttentionShape& s, cudaStream_t stream) {
  if (s.queries == 0) return true;
  switch (s.head_dim) {
    case 16: launch<16>(q, k, v, positions, out, s, stream); return true;
    case 32: launch<32>(q, k, v, positions, out, s, stream); return true;
    case 64: launch<64>(q, k, v, positions, out, s, stream); return true;
    case 80: launch<80>(q, k, v, positions, out, s, stream); return true;
    case 96: launch<96>(q, k, v, positions, out, s, stream); return true;
    case 128: launch<128>(q, k, v, positions, out, s, stream); return true;
    case 256: launch<256>(q, k, v, positions, out, s, stream); return true;
    default: return false;
  }
}

}  // namespace wick::cuda
