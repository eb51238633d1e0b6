// wick's own CUDA kernels: bf16 in memory, f32 arithmetic.
#include <cuda_bf16.h>

#include <cmath>

#include "backend/cuda/kernels.h"
#include "backend/cuda/reduce.cuh"

namespace wick::cuda {

namespace {

using bf16 = __nv_bfloat16;


__global__ void embedding_kernel(const bf16* table, const int32_t* ids, bf16* out, int64_t hidden) {
  const int64_t t = blockIdx.x;
  const bf16* src = table + int64_t(ids[t]) * hidden;
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) out[t * hidden + i] = src[i];
}

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

__global__ void rope_kernel(bf16* x, const int32_t* pos, int64_t tokens, int64_t heads, int64_t d, double log_theta) {
  const int64_t half = d / 2;
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= tokens * heads * half) return;
  const int64_t i = idx % half, th = idx / half, t = th / heads;
  // Angle in f32 from an f32 inverse frequency, as transformers computes it.
  const float inv_freq = float(exp(-log_theta * double(2 * i) / double(d)));
  const float angle = float(pos[t]) * inv_freq;
  float s, c;
  sincosf(angle, &s, &c);
  bf16* v = x + th * d;
  const float a = __bfloat162float(v[i]), b = __bfloat162float(v[i + half]);
  v[i] = __float2bfloat16(a * c - b * s);
  v[i + half] = __float2bfloat16(b * c + a * s);
}

__global__ void swiglu_kernel(const bf16* g, const bf16* u, bf16* out, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float gv = __bfloat162float(g[i]);
    out[i] = __float2bfloat16(gv / (1.0f + __expf(-gv)) * __bfloat162float(u[i]));
  }
}

__global__ void add_kernel(const bf16* a, const bf16* b, bf16* out, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = __float2bfloat16(__bfloat162float(a[i]) + __bfloat162float(b[i]));
}

template <class T>
__global__ void add_bias_kernel(T* out, const bf16* bias, int64_t rows, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < rows * n; i += int64_t(gridDim.x) * blockDim.x) {
    if constexpr (sizeof(T) == 4) out[i] += __bfloat162float(bias[i % n]);
    else out[i] = __float2bfloat16(__bfloat162float(out[i]) + __bfloat162float(bias[i % n]));
  }
}

// One block per row; 16-byte words when the row allows, else 2-byte ones.
template <class Word>
__global__ void scatter_rows_kernel(const Word* src, Word* dst, const int32_t* rows, int64_t words) {
  const Word* s = src + int64_t(blockIdx.x) * words;
  Word* d = dst + int64_t(rows[blockIdx.x]) * words;
  for (int64_t i = threadIdx.x; i < words; i += blockDim.x) d[i] = s[i];
}

int grid_for(int64_t n, int block) {
  const int64_t g = (n + block - 1) / block;
  return int(g < 65535 * 16 ? (g > 0 ? g : 1) : 65535 * 16);
}

}  // namespace

void embedding(const void* table, const int32_t* ids, void* out, int64_t n, int64_t hidden, cudaStream_t stream) {
  if (n == 0) return;
  embedding_kernel<<<unsigned(n), 256, 0, stream>>>(static_cast<const bf16*>(table), ids, static_cast<bf16*>(out), hidden);
}

void rmsnorm(const void* x, const void* weight, void* out, int64_t rows, int64_t n, float eps, cudaStream_t stream) {
  if (rows == 0) return;
  const int block = n >= 2048 ? 512 : n >= 512 ? 256 : 128;
  rmsnorm_kernel<<<unsigned(rows), block, 0, stream>>>(static_cast<const bf16*>(x), static_cast<const bf16*>(weight),
                                                       static_cast<bf16*>(out), n, eps);
}

void rope(void* x, const int32_t* pos, int64_t tokens, int64_t heads, int64_t d, double theta, cudaStream_t stream) {
  const int64_t total = tokens * heads * (d / 2);
  if (total == 0) return;
  rope_kernel<<<unsigned((total + 255) / 256), 256, 0, stream>>>(static_cast<bf16*>(x), pos, tokens, heads, d,
                                                                  std::log(theta));
}

void swiglu(const void* gate, const void* up, void* out, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  swiglu_kernel<<<grid_for(n, 256), 256, 0, stream>>>(static_cast<const bf16*>(gate), static_cast<const bf16*>(up),
                                                      static_cast<bf16*>(out), n);
}

void add(const void* a, const void* b, void* out, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  add_kernel<<<grid_for(n, 256), 256, 0, stream>>>(static_cast<const bf16*>(a), static_cast<const bf16*>(b),
                                                   static_cast<bf16*>(out), n);
}

void scatter_rows(const void* src, void* dst, const int32_t* rows, int64_t n, int64_t row_bytes, cudaStream_t stream) {
  if (n == 0) return;
  const bool wide = row_bytes % 16 == 0 && reinterpret_cast<uintptr_t>(src) % 16 == 0 &&
                    reinterpret_cast<uintptr_t>(dst) % 16 == 0;
  if (wide)
    scatter_rows_kernel<uint4><<<unsigned(n), 128, 0, stream>>>(static_cast<const uint4*>(src), static_cast<uint4*>(dst),
                                                                rows, row_bytes / 16);
  else
    scatter_rows_kernel<uint16_t><<<unsigned(n), 128, 0, stream>>>(static_cast<const uint16_t*>(src),
                                                                   static_cast<uint16_t*>(dst), rows, row_bytes / 2);
}

void add_bias(void* out, bool out_f32, const void* bias, int64_t rows, int64_t n, cudaStream_t stream) {
  if (rows * n == 0) return;
  if (out_f32)
    add_bias_kernel<float><<<grid_for(rows * n, 256), 256, 0, stream>>>(static_cast<float*>(out),
                                                                       static_cast<const bf16*>(bias), rows, n);
  else
    add_bias_kernel<bf16><<<grid_for(rows * n, 256), 256, 0, stream>>>(static_cast<bf16*>(out),
                                                                      static_cast<const bf16*>(bias), rows, n);
}

}  // namespace wick::cuda
