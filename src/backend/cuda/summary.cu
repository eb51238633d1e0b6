// The logit summary on the device (wick/logit_summary.h): the best `count` logits of a row, its maximum and
// normaliser, and the gathered logits, so that a sampler needs a few hundred bytes of the row, not all of it.
// Logits become unique 64-bit keys (order-preserving float bits, then the complement of the id, so that ties rank
// the lower id first). Each block of the first kernel takes a chunk of 4096 and finds its `count`-th largest key
// by bisection over the key space (64 block-wide counts: no sort), keeping the keys at or above it, with the
// chunk's maximum and Σexp; one block of the second does the same over the chunks' keys and sorts the `count`
// it keeps.
#include <cuda_runtime.h>

#include <cmath>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernels.h"
#include "backend/cuda/reduce.cuh"

namespace wick::cuda {

namespace {

using Key = unsigned long long;
constexpr int kChunk = 4096;        // logits per block of the first kernel
constexpr int kChunkThreads = 512;
constexpr int kMerge = 8192;        // keys the merging block takes (eight per thread): blocks · count at most
constexpr int kMergeThreads = 1024;
constexpr int kMaxCount = 256;      // the most best ids a summary returns on the device

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

// Σ of `mine` over the block; every thread gets it. The shared words are reused safely by the next call: each is
// written only after every thread has passed the barrier behind the last read of it.
template <int Threads>
__device__ int block_count(int mine) {
  __shared__ int warp_counts[Threads / 32];
  __shared__ int total;
  mine = __reduce_add_sync(0xffffffffu, mine);
  if (threadIdx.x % 32 == 0) warp_counts[threadIdx.x / 32] = mine;
  __syncthreads();
  if (threadIdx.x < 32) {
    const int v = __reduce_add_sync(0xffffffffu, threadIdx.x < Threads / 32 ? warp_counts[threadIdx.x] : 0);
    if (threadIdx.x == 0) total = v;
  }
  __syncthreads();
  return total;
}

// The c-th largest of the block's keys (Per per thread; zeros pad): the largest K with at least c keys ≥ K.
template <int Threads, int Per>
__device__ Key kth_largest(const Key (&k)[Per], int c) {
  Key lo = 0, hi = ~Key(0);
  while (lo < hi) {
    const Key mid = lo + (hi - lo) / 2 + 1;
    int mine = 0;
#pragma unroll
    for (int u = 0; u < Per; ++u) mine += k[u] >= mid;
    if (block_count<Threads>(mine) >= c) lo = mid;
    else hi = mid - 1;
  }
  return lo;
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

// Block b: the best `count` keys of logits [b·kChunk, (b+1)·kChunk) into keys_out[b] (in no order), and
// (max, Σexp(l − max)) into stats[b].
__global__ void __launch_bounds__(kChunkThreads) chunk_kernel(const float* logits, int64_t n, int count,
                                                              Key* keys_out, float2* stats) {
  constexpr int kPer = kChunk / kChunkThreads;
  const int64_t base = int64_t(blockIdx.x) * kChunk;
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
  keep_largest(k, kth_largest<kChunkThreads>(k, count), count, keys_out + int64_t(blockIdx.x) * count);
  if (threadIdx.x == 0) stats[blockIdx.x] = make_float2(m, s);
}

// out: max, Σexp, the best `count` ids (as floats) and their logits, then the gathered logits.
__global__ void __launch_bounds__(kMergeThreads)
    merge_kernel(const float* logits, const Key* keys_in, const float2* stats, int blocks, int count,
                 const int32_t* gather, int64_t gathered, float* out) {
  constexpr int kPer = kMerge / kMergeThreads;
  __shared__ Key best[kMaxCount];
  Key k[kPer];
#pragma unroll
  for (int u = 0; u < kPer; ++u) {
    const int i = int(threadIdx.x) + u * kMergeThreads;
    k[u] = i < blocks * count ? keys_in[i] : Key(0);
  }
  for (int i = int(threadIdx.x); i < kMaxCount; i += kMergeThreads) best[i] = 0;
  keep_largest(k, kth_largest<kMergeThreads>(k, count), count, best);  // its first barrier orders the zeros before
  sort_best_first<kMaxCount, kMergeThreads>(best);
  for (int i = int(threadIdx.x); i < count; i += kMergeThreads) {
    const int64_t id = id_of(best[i]);
    out[2 + i] = float(id);
    out[2 + count + i] = logits[id];
  }
  for (int64_t i = threadIdx.x; i < gathered; i += kMergeThreads) out[2 + 2 * count + i] = logits[gather[i]];
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

int64_t summary_workspace_bytes(int64_t n, int count) {
  const int64_t blocks = chunks_of(n);
  if (n <= 0 || n >= (int64_t(1) << 24) || count < 1 || count > kMaxCount || blocks * count > kMerge) return -1;
  return blocks * count * int64_t(sizeof(Key)) + blocks * int64_t(sizeof(float2));
}

void summarize(const float* logits, int64_t n, int count, const int32_t* gather, int64_t gathered, float* out,
               void* workspace, cudaStream_t stream) {
  const int blocks = int(chunks_of(n));
  Key* keys = static_cast<Key*>(workspace);
  float2* stats = reinterpret_cast<float2*>(keys + int64_t(blocks) * count);
  chunk_kernel<<<blocks, kChunkThreads, 0, stream>>>(logits, n, count, keys, stats);
  merge_kernel<<<1, kMergeThreads, 0, stream>>>(logits, keys, stats, blocks, count, gather, gathered, out);
}

}  // namespace wick::cuda
