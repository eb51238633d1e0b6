// Split-K "flash decoding" for a few queries: the visible keys are cut into chunks spread over blocks; a block takes
// one chunk for one kv head and (up to eight of) the query heads that share it, so each K/V load serves the whole
// group, and the last block of a (query, head slice) to finish merges the chunks' partial softmaxes. Launched
// chained (chain.cuh): the next kernel's weight loads start while it runs.
#include "backend/cuda/attention_decode.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "backend/cuda/async_copy.cuh"
#include "backend/cuda/attention_common.cuh"
#include "backend/cuda/chain.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/reduce.cuh"

namespace wick::cuda {

namespace {

using namespace attention_kernels;

constexpr int kSplitWarps = 8, kSplitThreads = kSplitWarps * 32;
constexpr int kMaxGroup = kSplitWarps;  // query heads per block; warp w keeps head w's running max and sum
constexpr int kStages = 3;              // tiles in flight: two loading while one is used
constexpr int64_t kMinChunk = 64;       // keys per block at least, so short contexts do not pay for a merge
constexpr int64_t kMaxSplits = 64;      // bounds the merge, which one block reads alone
// The workspace starts with the tickets (zero between launches), then the chunks' partial results. One ticket per
// (query, head slice) of a launch; launches with more slices run one split (no merge, no ticket).
constexpr int64_t kTicketSlots = 16384;
constexpr size_t kTicketBytes = kTicketSlots * sizeof(unsigned);

struct SplitParams {
  const bf16 *q, *k, *v;
  const int32_t* positions;
  const int32_t* tables;  // paged: query i's key j is row tables[starts[i] + j / block_size] · block_size + j % block_size
  const int32_t* starts;  // (null tables: row j)
  int block_size;
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
  const int32_t* table = p.tables ? p.tables + p.starts[i] : nullptr;

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
        const int64_t j = t0 + r;
        const int64_t key = !valid ? 0 : table ? int64_t(table[j / p.block_size]) * p.block_size + j % p.block_size : j;
        const int64_t at = valid ? (key * p.kv_heads + kvh) * D + col : 0;
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
  // As many splits as the capacity can use, as far as the workspace holds their partials, and no more than fill
  // the GPU twice over (a batch of many queries fills it without splitting their keys, and a split costs a merge);
  // one split (no workspace at all) otherwise.
  static const int64_t sms = int64_t(sm_count());
  int64_t splits = std::min({kMaxSplits, ceil_div(s.capacity, kMinChunk), ceil_div(2 * sms, s.queries * slices)});
  const size_t split_bytes = size_t(s.queries * s.heads) * (D + 2) * sizeof(float);
  if (s.queries * slices > kTicketSlots || s.workspace == nullptr || s.workspace_bytes < kTicketBytes) splits = 1;
  else splits = std::min(splits, int64_t((s.workspace_bytes - kTicketBytes) / split_bytes));
  splits = std::max<int64_t>(splits, 1);
  auto* base = static_cast<unsigned char*>(s.workspace);
  auto* acc = reinterpret_cast<float*>(base + kTicketBytes);  // 16-byte aligned for the merge's float4 reads
  const SplitParams p{.q = static_cast<const bf16*>(q), .k = static_cast<const bf16*>(k),
                      .v = static_cast<const bf16*>(v), .positions = positions, .tables = s.tables,
                      .starts = s.starts, .block_size = s.block_size, .out = static_cast<bf16*>(out),
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

}  // namespace

bool attention_decode(const void* q, const void* k, const void* v, const int32_t* positions, void* out,
                      const AttentionShape& s, cudaStream_t stream) {
  return with_head_dim(s.head_dim, [&](auto d) { launch_split<d.value>(q, k, v, positions, out, s, stream); });
}

}  // namespace wick::cuda
