// What the two attention kernels (attention_decode.cu, attention_prefill.cu) share. Both read each query's position
// on the device, so a launch depends only on host-known shapes and a captured graph replays at any position.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace wick::cuda::attention_kernels {

using bf16 = __nv_bfloat16;
constexpr float kLog2e = 1.4426950408889634f;  // scores are kept in log2 units so exp2f does the softmax

__host__ __device__ constexpr int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Kernels above 48 KB of dynamic shared memory must opt in, once per process.
template <auto kernel>
void allow_shared_bytes(size_t bytes) {
  [[maybe_unused]] static const cudaError_t once =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
}

/// Calls f(std::integral_constant<int, D>{}) for D = head_dim, one of the head dims the kernels are built for, and
/// returns true; false for any other.
template <class F>
bool with_head_dim(int64_t head_dim, F&& f) {
  switch (head_dim) {
    case 16: f(std::integral_constant<int, 16>{}); return true;
    case 32: f(std::integral_constant<int, 32>{}); return true;
    case 64: f(std::integral_constant<int, 64>{}); return true;
    case 80: f(std::integral_constant<int, 80>{}); return true;
    case 96: f(std::integral_constant<int, 96>{}); return true;
    case 128: f(std::integral_constant<int, 128>{}); return true;
    case 256: f(std::integral_constant<int, 256>{}); return true;
    default: return false;
  }
}

}  // namespace wick::cuda::attention_kernels
