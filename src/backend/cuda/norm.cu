// RMSNorm and the residual add folded into it: one block per row, Σx² by a block reduction. LayerNorm: a warp per
// row held in registers where the row is short (encoders' 384 to 1024), a block per row otherwise.
#include "backend/cuda/norm.h"

#include <cuda_bf16.h>

#include "backend/cuda/bf16_vector.cuh"
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

constexpr int kNormRowsPerBlock = 8;  // layer_norm_warp_kernel: a warp per row
constexpr int kNormMaxVectors = 4;    // 16-byte vectors per lane it keeps: rows of up to 32 · 4 · 8 = 1024

// A warp per row, the row in registers (V 16-byte vectors a lane): one read of x and residual, the mean, then the
// variance about it (two passes over registers, not Σy² − mean²), one write. Every lane reads its own vectors
// before any writes them, so out may alias x or residual.
template <int V>
__global__ void layer_norm_warp_kernel(LayerNormParams p) {
  const int64_t row = int64_t(blockIdx.x) * kNormRowsPerBlock + threadIdx.x / 32;
  if (row >= p.rows) return;
  const int lane = threadIdx.x % 32, vectors = int(p.n / 8);
  const uint4* x = static_cast<const uint4*>(p.x) + row * vectors;
  const uint4* r = p.residual ? static_cast<const uint4*>(p.residual) + row * vectors : nullptr;
  float y[V][8];
  float sum = 0.0f;
#pragma unroll
  for (int i = 0; i < V; ++i) {
    const int c = lane + 32 * i;
    if (c < vectors) {
      unpack8(x[c], y[i]);
      if (r) {
        float d[8];
        unpack8(r[c], d);
#pragma unroll
        for (int j = 0; j < 8; ++j) y[i][j] += d[j];
      }
#pragma unroll
      for (int j = 0; j < 8; ++j) sum += y[i][j];
    }
  }
  const float mean = warp_sum(sum) / float(p.n);
  float ss = 0.0f;
#pragma unroll
  for (int i = 0; i < V; ++i)
    if (lane + 32 * i < vectors)
#pragma unroll
      for (int j = 0; j < 8; ++j) ss += (y[i][j] - mean) * (y[i][j] - mean);
  const float inv = rsqrtf(warp_sum(ss) / float(p.n) + p.eps);
  uint4* out = static_cast<uint4*>(p.out) + row * vectors;
#pragma unroll
  for (int i = 0; i < V; ++i) {
    const int c = lane + 32 * i;
    if (c < vectors) {
      float w[8], b[8];
      unpack8(static_cast<const uint4*>(p.weight)[c], w);
      unpack8(static_cast<const uint4*>(p.bias)[c], b);
#pragma unroll
      for (int j = 0; j < 8; ++j) y[i][j] = (y[i][j] - mean) * inv * w[j] + b[j];
      out[c] = pack8(y[i]);
    }
  }
}

// Any row: a block per row, three passes over memory (the mean, the variance about it, the output). Each element
// is read last and written by the same thread after the block's reductions, so out may alias x or residual.
__global__ void layer_norm_block_kernel(LayerNormParams p) {
  const int64_t n = p.n, at = int64_t(blockIdx.x) * n;
  const bf16* x = static_cast<const bf16*>(p.x) + at;
  const bf16* r = p.residual ? static_cast<const bf16*>(p.residual) + at : nullptr;
  const auto value = [&](int64_t i) { return __bfloat162float(x[i]) + (r ? __bfloat162float(r[i]) : 0.0f); };
  float sum = 0.0f;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) sum += value(i);
  const float mean = block_sum(sum) / float(n);
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) ss += (value(i) - mean) * (value(i) - mean);
  const float inv = rsqrtf(block_sum(ss) / float(n) + p.eps);
  const bf16* w = static_cast<const bf16*>(p.weight);
  const bf16* b = static_cast<const bf16*>(p.bias);
  bf16* out = static_cast<bf16*>(p.out) + at;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
    out[i] = __float2bfloat16((value(i) - mean) * inv * __bfloat162float(w[i]) + __bfloat162float(b[i]));
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

void layer_norm(const LayerNormParams& p, cudaStream_t stream) {
  if (p.rows == 0 || p.n == 0) return;
  const bool vectors = p.n % 8 == 0 && p.n <= 32 * 8 * kNormMaxVectors && aligned16(p.x) && aligned16(p.weight) &&
                       aligned16(p.bias) && aligned16(p.out) && (!p.residual || aligned16(p.residual));
  if (!vectors) {
    layer_norm_block_kernel<<<unsigned(p.rows), row_threads(p.n), 0, stream>>>(p);
    return;
  }
  const unsigned blocks = unsigned((p.rows + kNormRowsPerBlock - 1) / kNormRowsPerBlock);
  const unsigned threads = 32 * kNormRowsPerBlock;
  switch ((p.n + 255) / 256) {  // 16-byte vectors per lane
    case 1: layer_norm_warp_kernel<1><<<blocks, threads, 0, stream>>>(p); break;
    case 2: layer_norm_warp_kernel<2><<<blocks, threads, 0, stream>>>(p); break;
    case 3: layer_norm_warp_kernel<3><<<blocks, threads, 0, stream>>>(p); break;
    default: layer_norm_warp_kernel<kNormMaxVectors><<<blocks, threads, 0, stream>>>(p); break;
  }
}

}  // namespace wick::cuda
