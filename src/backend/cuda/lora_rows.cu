// The LoRA path of a mixed-adapter batch: row t reads the factors its own adapter holds for the projection, so the
// rows of any number of adapters go through one pair of launches. The shrink (A·x, a few dot products of length
// `in` per row) runs a block per row and four of its ranks; the expand (B·low) runs a thread per output element.
#include "backend/cuda/lora_rows.h"

#include <cuda_bf16.h>

#include "backend/backend.h"
#include "backend/cuda/reduce.cuh"

namespace wick::cuda {

namespace {

using bf16 = __nv_bfloat16;
constexpr int kShrinkThreads = 128, kShrinkWarps = kShrinkThreads / 32;
constexpr int kShrinkRanks = 4;  // ranks per shrink block: rows of few ranks still spread over several blocks
constexpr int kExpandThreads = 256;

__device__ inline const LoraEntry* entry_of(const unsigned long long* tables, int64_t t, int64_t slot) {
  const unsigned long long address = tables[t];
  if (address == 0) return nullptr;
  const LoraEntry* e = reinterpret_cast<const LoraEntry*>(address) + slot;
  return e->rank > 0 ? e : nullptr;
}

// Grid (n, ⌈max_rank / kShrinkRanks⌉): low[t, r] = Σ_i x[t, i]·A[r, i] for kShrinkRanks of the row's ranks. Each
// thread takes eight inputs at a time (where `in` allows) and reads them once for all the block's ranks, so a lane
// has kShrinkRanks independent loads in flight; the block then sums its threads' partials.
__global__ void __launch_bounds__(kShrinkThreads) shrink_kernel(LoraRowsParams p) {
  const int64_t t = blockIdx.x;
  const LoraEntry* e = entry_of(p.tables, t, p.slot);
  const int r0 = int(blockIdx.y) * kShrinkRanks;
  if (!e || r0 >= e->rank) return;
  const int ranks = min(kShrinkRanks, e->rank - r0);
  const bf16* x = static_cast<const bf16*>(p.x) + t * p.in;
  const bf16* a = static_cast<const bf16*>(e->a) + int64_t(r0) * p.in;
  float sum[kShrinkRanks] = {};
  if (p.in % 8 == 0) {
    for (int64_t i = int64_t(threadIdx.x) * 8; i < p.in; i += kShrinkThreads * 8) {
      const uint4 xv = *reinterpret_cast<const uint4*>(x + i);
      const __nv_bfloat162* x2 = reinterpret_cast<const __nv_bfloat162*>(&xv);
      uint4 av[kShrinkRanks];
#pragma unroll
      for (int r = 0; r < kShrinkRanks; ++r)
        if (r < ranks) av[r] = *reinterpret_cast<const uint4*>(a + int64_t(r) * p.in + i);
#pragma unroll
      for (int r = 0; r < kShrinkRanks; ++r) {
        if (r >= ranks) continue;
        const __nv_bfloat162* a2 = reinterpret_cast<const __nv_bfloat162*>(&av[r]);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const float2 xf = __bfloat1622float2(x2[j]), af = __bfloat1622float2(a2[j]);
          sum[r] += xf.x * af.x + xf.y * af.y;
        }
      }
    }
  } else {
    for (int64_t i = threadIdx.x; i < p.in; i += kShrinkThreads) {
      const float xf = __bfloat162float(x[i]);
#pragma unroll
      for (int r = 0; r < kShrinkRanks; ++r)
        if (r < ranks) sum[r] += xf * __bfloat162float(a[int64_t(r) * p.in + i]);
    }
  }
  __shared__ float partial[kShrinkWarps][kShrinkRanks];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll
  for (int r = 0; r < kShrinkRanks; ++r) {
    const float w = warp_sum(sum[r]);
    if (lane == 0) partial[warp][r] = w;
  }
  __syncthreads();
  if (threadIdx.x < ranks) {
    float total = 0.0f;
#pragma unroll
    for (int w = 0; w < kShrinkWarps; ++w) total += partial[w][threadIdx.x];
    p.low[t * p.max_rank + r0 + threadIdx.x] = total;
  }
}

// Grid (n, ⌈outs / kExpandThreads⌉): out[t, o] += scale · Σ_r B[o, r]·low[t, r].
__global__ void __launch_bounds__(kExpandThreads) expand_kernel(LoraRowsParams p) {
  const int64_t t = blockIdx.x;
  const LoraEntry* e = entry_of(p.tables, t, p.slot);
  if (!e) return;
  extern __shared__ float low[];  // [rank]
  const int rank = e->rank;
  for (int r = threadIdx.x; r < rank; r += kExpandThreads) low[r] = p.low[t * p.max_rank + r];
  __syncthreads();
  const int64_t o = int64_t(blockIdx.y) * kExpandThreads + threadIdx.x;
  if (o >= p.outs) return;
  const bf16* b = static_cast<const bf16*>(e->b) + o * rank;
  float sum = 0.0f;
  if (rank % 8 == 0) {  // B's rows 16-byte aligned: eight ranks a load
    for (int r = 0; r < rank; r += 8) {
      const uint4 bv = *reinterpret_cast<const uint4*>(b + r);
      const __nv_bfloat162* b2 = reinterpret_cast<const __nv_bfloat162*>(&bv);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const float2 bf = __bfloat1622float2(b2[j]);
        sum += bf.x * low[r + 2 * j] + bf.y * low[r + 2 * j + 1];
      }
    }
  } else {
    for (int r = 0; r < rank; ++r) sum += __bfloat162float(b[r]) * low[r];
  }
  bf16* out = static_cast<bf16*>(p.out) + t * p.outs + o;
  *out = __float2bfloat16(__bfloat162float(*out) + e->scale * sum);
}

}  // namespace

void lora_rows(const LoraRowsParams& p, cudaStream_t stream) {
  if (p.n == 0 || p.max_rank == 0) return;
  shrink_kernel<<<dim3(unsigned(p.n), unsigned((p.max_rank + kShrinkRanks - 1) / kShrinkRanks)), kShrinkThreads, 0,
                  stream>>>(p);
  const dim3 grid(unsigned(p.n), unsigned((p.outs + kExpandThreads - 1) / kExpandThreads));
  expand_kernel<<<grid, kExpandThreads, size_t(p.max_rank) * sizeof(float), stream>>>(p);
}

}  // namespace wick::cuda
