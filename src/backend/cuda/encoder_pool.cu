// Pooling an encoder's token rows into one vector per sequence: a block per sequence, a thread per column (strided),
// each column reduced over the span's rows in f32 (coalesced across the warp), then the L2 norm by a block
// reduction. It runs once per batch, after the layers, so it is kept plain.
#include "backend/cuda/encoder_pool.h"

#include <cuda_bf16.h>

#include "backend/cuda/reduce.cuh"

namespace wick::cuda {

namespace {

using bf16 = __nv_bfloat16;
constexpr int kThreads = 256;

__global__ void pool_kernel(EncoderPoolParams p) {
  const int64_t s = blockIdx.x, n = p.n;
  const int64_t start = min(max(int64_t(p.spans[2 * s]), int64_t(0)), p.rows);
  const int64_t end = min(max(int64_t(p.spans[2 * s + 1]), start), p.rows);
  const bf16* x = static_cast<const bf16*>(p.x);
  float* out = p.out + s * n;
  float ss = 0.0f;
  for (int64_t c = threadIdx.x; c < n; c += kThreads) {
    float v = 0.0f;  // an empty span gives zeros
    if (end > start) {
      switch (p.mode) {
        case PoolMode::mean: {
#pragma unroll 4
          for (int64_t r = start; r < end; ++r) v += __bfloat162float(x[r * n + c]);
          v /= float(end - start);
          break;
        }
        case PoolMode::max: {
          v = -INFINITY;
#pragma unroll 4
          for (int64_t r = start; r < end; ++r) v = fmaxf(v, __bfloat162float(x[r * n + c]));
          break;
        }
        case PoolMode::cls: v = __bfloat162float(x[start * n + c]); break;
        case PoolMode::last: v = __bfloat162float(x[(end - 1) * n + c]); break;
      }
    }
    out[c] = v;
    ss += v * v;
  }
  if (!p.normalize) return;
  const float norm = fmaxf(sqrtf(block_sum(ss)), 1e-12f);
  for (int64_t c = threadIdx.x; c < n; c += kThreads) out[c] /= norm;  // this thread's own writes above
}

}  // namespace

void encoder_pool(const EncoderPoolParams& p, cudaStream_t stream) {
  if (p.sequences == 0 || p.n == 0) return;
  pool_kernel<<<unsigned(p.sequences), kThreads, 0, stream>>>(p);
}

}  // namespace wick::cuda
