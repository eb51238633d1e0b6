// The logit summary on the device (wick/logit_summary.h): the best `count` logits of each row, its maximum and
// normaliser, and the gathered logits, so that a sampler needs a few hundred bytes of a row, not all of it.
// Logits become unique 64-bit keys (order-preserving float bits, then the complement of the id, so that ties rank
// the lower id first). Each block of the first kernel takes a chunk of 4096 of one row (grid: chunks × rows) and
// finds its `count`-th largest key a byte at a time (radix select: eight block-wide histograms, no sort), keeping
// the keys at or above it, with the chunk's maximum and Σexp; one block a row of the second does the same over the
// row's chunks' keys and sorts the `count` it keeps. Asked for one id (greedy), both
// kernels take the largest key by a plain reduction instead.
#include "backend/cuda/summary.h"

#include <cmath>

#include "backend/cuda/reduce.cuh"

namespace wick::cuda {

namespace {

using Key = unsigned long long;
constexpr int kChunk = 4096;          // logits per block of the first kernel
constexpr int kChunkThreads = 512;    // eight logits per thread, held in registers
constexpr int kMerge = 8192;          // keys the merging block takes (eight per thread): blocks · count at most
constexpr int kMergeThreads = 1024;   // the largest block: the merge is one block's work
constexpr int kMaxCount = 256;        // the most best ids a summary returns on the device
constexpr int kSmallSort = 64;        // counts up to this sort 64 keys, not kMaxCount
constexpr int64_t kMaxRows = 65535;   // the first kernel's grid.y

// Larger keys rank first: by value (NaN as -inf), then by lower id. 0 ranks below every logit.
__device__ inline Key key_of(float v, int64_t id) {
  unsigned bits = isnan(v) ? 0xff800000u : __float_as_uint(v);
  bits ^= (bits >> 31) ? 0xffffffffu : 0x80000000u;
  return Key(bits) << 32 | (0xffffffffu - unsigned(id));
}

__device__ inline int64_t id_of(Key k) { return int64_t(0xffffffffu - unsigned(k & 0xffffffffu)); }

// Sorts keys[0, N) in shared memory, best first (bitonic network; every thread of the block calls it).
template <int N, int Threads>
__device__ void sort_best_first(Key* keys) {
  for (int k = 2; k <= N; k <<= 1)
    for (int j = k >> 1; j > 0; j >>= 1) {
      for (int i = int(threadIdx.x); i < N; i += Threads) {
        const int l = i ^ j;
        if (l <= i) continue;
        const Key a = keys[i], b = keys[l];
        if ((i & k) == 0 ? a < b : a > b) keys[i] = b, keys[l] = a;
      }
      __syncthreads();
    }
}

// The c-th largest of the block's keys (Per per thread; zeros pad; 1 ≤ c ≤ Threads · Per), chosen a byte at a
// time from the top (radix select): each of eight rounds counts, in 256 bins by their next byte, the keys that
// match the bytes chosen so far, and picks the bin holding the c-th largest of them. Two barriers a round; the
// counts are combined within each warp first (keys of one row cluster in a few bins, and shared-memory atomics on
// one bin serialise). Eight rounds of a byte, not a bisection of the 64-bit key space (64 block-wide counts).
template <int Threads, int Per>
__device__ Key kth_largest(const Key (&k)[Per], int c) {
  static_assert(Threads >= 64, "warp 0 scans while the others clear");
  __shared__ int bins[2][256];
  __shared__ Key chosen;
  __shared__ int still;
  const int lane = int(threadIdx.x) % 32;
  for (int i = int(threadIdx.x); i < 256; i += Threads) bins[0][i] = 0;
  __syncthreads();
  Key prefix = 0;  // the bytes chosen so far, in place
  int need = c;    // the rank wanted among the keys that match them
  for (int round = 0; round < 8; ++round) {
    const int shift = 56 - 8 * round;
    const Key high = round == 0 ? 0 : ~Key(0) << (shift + 8);
    int* count = bins[round & 1];
#pragma unroll
    for (int u = 0; u < Per; ++u) {
      const bool in = (k[u] & high) == prefix;
      const unsigned byte = unsigned(k[u] >> shift) & 255u;
      const unsigned active = __ballot_sync(0xffffffffu, in);
      if (in) {
        const unsigned peers = __match_any_sync(active, byte);
        if (__ffs(peers) - 1 == lane) atomicAdd(&count[byte], __popc(peers));
      }
    }
    __syncthreads();
    if (threadIdx.x < 32) {
      // Lane l holds bins [8l, 8l + 8); `above`: the keys in the bins of higher lanes.
      int mine[8], sum = 0;
#pragma unroll
      for (int b = 0; b < 8; ++b) sum += mine[b] = count[8 * lane + b];
      int above = sum;
      for (int o = 1; o < 32; o <<= 1) {
        const int v = __shfl_down_sync(0xffffffffu, above, o);
        if (lane + o < 32) above += v;
      }
      above -= sum;
      if (above < need && need <= above + sum)
        for (int b = 7; b >= 0; --b) {
          if (need <= above + mine[b]) {
            chosen = prefix | Key(8 * lane + b) << shift;
            still = need - above;
            break;
          }
          above += mine[b];
        }
    } else {
      for (int i = int(threadIdx.x) - 32; i < 256; i += Threads - 32) bins[(round + 1) & 1][i] = 0;
    }
    __syncthreads();
    prefix = chosen;
    need = still;
  }
  return prefix;
}

// The largest of the block's keys (Per per thread), to every thread: what kth_largest finds for c = 1, by a
// reduction (a greedy sampler's question, asked every step).
template <int Per>
__device__ Key largest(const Key (&k)[Per]) {
  __shared__ Key partial[32];
  Key m = k[0];
#pragma unroll
  for (int u = 1; u < Per; ++u) m = k[u] > m ? k[u] : m;
  for (int o = 16; o > 0; o >>= 1) {
    const Key other = __shfl_xor_sync(0xffffffffu, m, o);
    m = other > m ? other : m;
  }
  const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
  if (lane == 0) partial[warp] = m;
  __syncthreads();
  m = lane < int(blockDim.x + 31) / 32 ? partial[lane] : Key(0);
  for (int o = 16; o > 0; o >>= 1) {
    const Key other = __shfl_xor_sync(0xffffffffu, m, o);
    m = other > m ? other : m;
  }
  __syncthreads();
  return m;
}

// The c largest of the block's keys into out[0, c), in no order: those above the c-th (fewer than c), then as
// many copies of it as fit (one, as keys are unique, unless it is the padding 0).
template <int Per>
__device__ void keep_largest(const Key (&k)[Per], Key kth, int c, Key* out) {
  __shared__ int n;
  if (threadIdx.x == 0) n = 0;
  __syncthreads();
#pragma unroll
  for (int u = 0; u < Per; ++u)
    if (k[u] > kth) out[atomicAdd(&n, 1)] = k[u];
  __syncthreads();
#pragma unroll
  for (int u = 0; u < Per; ++u)
    if (k[u] == kth) {
      const int slot = atomicAdd(&n, 1);
      if (slot < c) out[slot] = k[u];
    }
  __syncthreads();
}

// Block (b, r): the best `count` keys of row r's logits [b·kChunk, (b+1)·kChunk) into keys_out[r][b] (in no
// order), and (max, Σexp(l − max)) into stats[r][b].
__global__ void __launch_bounds__(kChunkThreads) chunk_kernel(const float* logits, int64_t n, int count,
                                                              Key* keys_out, float2* stats) {
  constexpr int kPer = kChunk / kChunkThreads;
  const int64_t base = int64_t(blockIdx.x) * kChunk;
  const int64_t block = int64_t(blockIdx.y) * gridDim.x + blockIdx.x;
  logits += int64_t(blockIdx.y) * n;
  float v[kPer];
  Key k[kPer];
  float m = -INFINITY;
#pragma unroll
  for (int u = 0; u < kPer; ++u) {
    const int64_t g = base + threadIdx.x + u * kChunkThreads;
    v[u] = g < n ? logits[g] : -INFINITY;
    k[u] = g < n ? key_of(v[u], g) : Key(0);
    if (!isnan(v[u])) m = fmaxf(m, v[u]);
  }
  m = block_max(m);
  float s = 0.0f;
  if (m != -INFINITY)
#pragma unroll
    for (int u = 0; u < kPer; ++u)
      if (!isnan(v[u])) s += expf(v[u] - m);
  s = block_sum(s);
  if (count == 1) {
    const Key best = largest(k);
    if (threadIdx.x == 0) keys_out[block] = best;
  } else {
    keep_largest(k, kth_largest<kChunkThreads>(k, count), count, keys_out + block * count);
  }
  if (threadIdx.x == 0) stats[block] = make_float2(m, s);
}

// Block r, row r's summary at out + r·(2 + 2·count) + gather_starts[r]: max, Σexp, the best `count` ids (as
// floats) and their logits, then the logits of its gathered ids.
__global__ void __launch_bounds__(kMergeThreads)
    merge_kernel(const float* logits, int64_t n, const Key* keys_in, const float2* stats, int blocks, int count,
                 const int32_t* gather, const int32_t* gather_starts, float* out) {
  constexpr int kPer = kMerge / kMergeThreads;
  __shared__ Key best[kMaxCount];
  const int64_t row = blockIdx.x;
  logits += row * n;
  keys_in += row * blocks * count;
  stats += row * blocks;
  const int64_t first = gather_starts[row], gathered = gather_starts[row + 1] - first;
  out += row * (2 + 2 * count) + first;
  Key k[kPer];
#pragma unroll
  for (int u = 0; u < kPer; ++u) {
    const int i = int(threadIdx.x) + u * kMergeThreads;
    k[u] = i < blocks * count ? keys_in[i] : Key(0);
  }
  if (count == 1) {
    const Key top = largest(k);
    if (threadIdx.x == 0) best[0] = top;
    __syncthreads();
  } else {
    for (int i = int(threadIdx.x); i < kMaxCount; i += kMergeThreads) best[i] = 0;
    keep_largest(k, kth_largest<kMergeThreads>(k, count), count, best);  // its first barrier orders the zeros before
    if (count <= kSmallSort)
      sort_best_first<kSmallSort, kMergeThreads>(best);  // the zeros past `count` sort last
    else
      sort_best_first<kMaxCount, kMergeThreads>(best);
  }
  for (int i = int(threadIdx.x); i < count; i += kMergeThreads) {
    const int64_t id = id_of(best[i]);
    out[2 + i] = float(id);
    out[2 + count + i] = logits[id];
  }
  for (int64_t i = threadIdx.x; i < gathered; i += kMergeThreads) out[2 + 2 * count + i] = logits[gather[first + i]];
  if (threadIdx.x == 0) {
    float m = -INFINITY;
    for (int b = 0; b < blocks; ++b) m = fmaxf(m, stats[b].x);
    double z = 0;
    if (m != -INFINITY)
      for (int b = 0; b < blocks; ++b)
        if (stats[b].x != -INFINITY) z += double(stats[b].y) * exp(double(stats[b].x) - double(m));
    out[0] = m;
    out[1] = float(z);
  }
}

int64_t chunks_of(int64_t n) { return (n + kChunk - 1) / kChunk; }

}  // namespace

int64_t summary_workspace_bytes(int64_t rows, int64_t n, int count) {
  const int64_t blocks = chunks_of(n);
  if (rows < 1 || rows > kMaxRows || n <= 0 || n >= (int64_t(1) << 24) || count < 1 || count > kMaxCount ||
      blocks * count > kMerge)
    return -1;
  return rows * (blocks * count * int64_t(sizeof(Key)) + blocks * int64_t(sizeof(float2)));
}

void summarize(const SummaryParams& p, cudaStream_t stream) {
  const int blocks = int(chunks_of(p.n));
  Key* keys = static_cast<Key*>(p.workspace);
  float2* stats = reinterpret_cast<float2*>(keys + p.rows * blocks * p.count);
  chunk_kernel<<<dim3(blocks, unsigned(p.rows)), kChunkThreads, 0, stream>>>(p.logits, p.n, p.count, keys, stats);
  merge_kernel<<<unsigned(p.rows), kMergeThreads, 0, stream>>>(p.logits, p.n, keys, stats, blocks, p.count, p.gather,
                                                               p.gather_starts, p.out);
}

}  // namespace wick::cuda
