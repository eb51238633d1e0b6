// What the training kernels (backward.cu, attention_backward.cu) share: their tensors hold bf16 (the compute dtype)
// or f32, and every kernel is one template read into and written from f32.
#pragma once

#include <cuda_bf16.h>

namespace wick::cuda::backward_kernels {

using bf16 = __nv_bfloat16;

__device__ inline float load_f32(const float* p) { return *p; }
__device__ inline float load_f32(const bf16* p) { return __bfloat162float(*p); }
__device__ inline void store_f32(float* p, float v) { *p = v; }
__device__ inline void store_f32(bf16* p, float v) { *p = __float2bfloat16(v); }

/// Calls f(float{}) when `f32`, else f(bf16{}): the one place a training op picks its kernels' element type.
template <class F>
void with_element(bool f32, F&& f) {
  if (f32)
    f(float{});
  else
    f(bf16{});
}

}  // namespace wick::cuda::backward_kernels
