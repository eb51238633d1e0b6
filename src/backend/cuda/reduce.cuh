// Warp- and block-wide reductions shared by the CUDA kernels.
#pragma once

namespace wick::cuda {

/// Sum of `v` over the warp; every lane gets the total.
__device__ inline float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

/// Maximum of `v` over the warp; every lane gets it.
__device__ inline float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

/// Sum of `v` over the block (blockDim.x ≤ 1024); every thread gets the total.
__device__ inline float block_sum(float v) {
  __shared__ float partial[32];
  v = warp_sum(v);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  const int warps = (blockDim.x + 31) / 32;
  v = lane < warps ? partial[lane] : 0.0f;
  if (warp == 0) v = warp_sum(v);
  if (threadIdx.x == 0) partial[0] = v;
  __syncthreads();
  const float total = partial[0];
  __syncthreads();  // partial[] may be reused by the caller's next reduction
  return total;
}

/// Maximum of `v` over the block (blockDim.x ≤ 1024); every thread gets it.
__device__ inline float block_max(float v) {
  __shared__ float partial[32];
  v = warp_max(v);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  v = warp_max(lane < int(blockDim.x + 31) / 32 ? partial[lane] : -INFINITY);
  __syncthreads();  // partial[] may be reused by the caller's next reduction
  return v;
}

}  // namespace wick::cuda
