// Eight bf16 values in one 16-byte access (uint4), the unit of the memory-bound kernels' vector loads and stores.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

namespace wick::cuda {

/// The eight bf16 of v as floats, in order.
__device__ inline void unpack8(const uint4& v, float (&f)[8]) {
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&v);
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const float2 p = __bfloat1622float2(h[j]);
    f[2 * j] = p.x;
    f[2 * j + 1] = p.y;
  }
}

/// Eight floats rounded to bf16 (to nearest even), in order.
__device__ inline uint4 pack8(const float (&f)[8]) {
  uint4 v;
  __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&v);
#pragma unroll
  for (int j = 0; j < 4; ++j) h[j] = __floats2bfloat162_rn(f[2 * j], f[2 * j + 1]);
  return v;
}

/// Whether p may be read or written 16 bytes at a time.
inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace wick::cuda
