// RMSNorm and the residual add folded into it: one block per row, Σx² by a block reduction.
#include "backend/cuda/norm.h"

#include <cuda_bf16.h>

#include "backend/cuda/reduce.cuh"

namespace wick::cuda {

namespace {

using bf16 = __nv_bfloat16;

// Threads of a row's block: 128 for short rows up to 512 for rows of 2048 or more, so that every thread has a few
// elements and short rows leave few threads idle.
int row_threads(int64_t n) { return n >= 2048 ? 512 : n >= 512 ? 256 : 128; }

__global__ void rmsnorm_kernel(const bf16* x, const bf16* w, bf16* out, int64_t n, float eps) {
  const bf16* row = x + int64_t(blockIdx.x) * n;
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const float v = __bfloat162float(row[i]);
    ss += v * v;
  }
  const float inv = rsqrtf(block_sum(ss) / float(n) + eps);
  bf16* o = out + int64_t(blockIdx.x) * n;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
    o[i] = __float2bfloat16(__bfloat162float(w[i]) * (__bfloat162float(row[i]) * inv));
}

__global__ void add_rmsnorm_kernel(bf16* x, const bf16* delta, const bf16* w, bf16* normed, int64_t n, float eps) {
  bf16* row = x + int64_t(blockIdx.x) * n;
  const bf16* d = delta + int64_t(blockIdx.x) * n;
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const bf16 sum = __float2bfloat16(__bfloat162float(row[i]) + __bfloat162float(d[i]));  // rounded as add() does
    row[i] = sum;
    const float v = __bfloat162float(sum);
    ss += v * v;
  }
  const float inv = rsqrtf(block_sum(ss) / float(n) + eps);
  bf16* o = normed + int64_t(blockIdx.x) * n;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
    o[i] = __float2bfloat16(__bfloat162float(w[i]) * (__bfloat162float(row[i]) * inv));
}

}  // namespace

void rmsnorm(const void* x, const void* weight, void* out, int64_t rows, int64_t n, float eps, cudaStream_t stream) {
  if (rows == 0) return;
  rmsnorm_kernel<<<unsigned(rows), row_threads(n), 0, stream>>>(
      static_cast<const bf16*>(x), static_cast<const bf16*>(weight), static_cast<bf16*>(out), n, eps);
}

void add_rmsnorm(const AddRmsNormParams& p, cudaStream_t stream) {
  if (p.rows == 0) return;
  add_rmsnorm_kernel<<<unsigned(p.rows), row_threads(p.n), 0, stream>>>(
      static_cast<bf16*>(p.x), static_cast<const bf16*>(p.delta), static_cast<const bf16*>(p.weight),
      static_cast<bf16*>(p.normed), p.n, p.eps);
}

}  // namespace wick::cuda
