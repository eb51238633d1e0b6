// Elementwise kernels: grid-stride loops over n elements.
#include "backend/cuda/elementwise.h"

#include <cuda_bf16.h>

#include "backend/cuda/bf16_vector.cuh"

namespace wick::cuda {

namespace {

using bf16 = __nv_bfloat16;
constexpr int kThreads = 256;  // per block, a common size for memory-bound elementwise work
// Grid-stride launches stop growing here (a million blocks, far more than any GPU holds at once).
constexpr int64_t kMaxBlocks = 65535 * 16;

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

// transformers' "gelu" (x·Φ(x) with the exact erf) or, with kTanh, its tanh approximation ("gelu_new").
template <bool kTanh>
__device__ inline float gelu_of(float x) {
  if constexpr (kTanh) return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
  else return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f));
}

// Eight elements a thread, 16 bytes at a time; each thread reads its elements before writing them (out may alias x).
template <bool kTanh>
__global__ void gelu8_kernel(const uint4* x, uint4* out, int64_t vectors) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < vectors; i += int64_t(gridDim.x) * blockDim.x) {
    float f[8];
    unpack8(x[i], f);
#pragma unroll
    for (int j = 0; j < 8; ++j) f[j] = gelu_of<kTanh>(f[j]);
    out[i] = pack8(f);
  }
}

template <bool kTanh>
__global__ void gelu_kernel(const bf16* x, bf16* out, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = __float2bfloat16(gelu_of<kTanh>(__bfloat162float(x[i])));
}

// Blocks of kThreads for n elements, at least one.
int grid_for(int64_t n) {
  const int64_t g = (n + kThreads - 1) / kThreads;
  return int(g < kMaxBlocks ? (g > 0 ? g : 1) : kMaxBlocks);
}

template <bool kTanh>
void launch_gelu(const void* x, void* out, int64_t n, cudaStream_t stream) {
  if (n % 8 == 0 && aligned16(x) && aligned16(out))
    gelu8_kernel<kTanh><<<grid_for(n / 8), kThreads, 0, stream>>>(static_cast<const uint4*>(x),
                                                                   static_cast<uint4*>(out), n / 8);
  else
    gelu_kernel<kTanh><<<grid_for(n), kThreads, 0, stream>>>(static_cast<const bf16*>(x), static_cast<bf16*>(out), n);
}

}  // namespace

void swiglu(const void* gate, const void* up, void* out, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  swiglu_kernel<<<grid_for(n), kThreads, 0, stream>>>(static_cast<const bf16*>(gate), static_cast<const bf16*>(up),
                                                      static_cast<bf16*>(out), n);
}

void add(const void* a, const void* b, void* out, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  add_kernel<<<grid_for(n), kThreads, 0, stream>>>(static_cast<const bf16*>(a), static_cast<const bf16*>(b),
                                                   static_cast<bf16*>(out), n);
}

void add_bias(void* out, bool out_f32, const void* bias, int64_t rows, int64_t n, cudaStream_t stream) {
  if (rows * n == 0) return;
  if (out_f32)
    add_bias_kernel<float><<<grid_for(rows * n), kThreads, 0, stream>>>(static_cast<float*>(out),
                                                                       static_cast<const bf16*>(bias), rows, n);
  else
    add_bias_kernel<bf16><<<grid_for(rows * n), kThreads, 0, stream>>>(static_cast<bf16*>(out),
                                                                      static_cast<const bf16*>(bias), rows, n);
}

void gelu(const void* x, bool tanh, void* out, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  if (tanh) launch_gelu<true>(x, out, n, stream);
  else launch_gelu<false>(x, out, n, stream);
}

}  // namespace wick::cuda
