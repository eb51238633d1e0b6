// Warp- and block-wide reductions shared by the CUDA kernels.
#pragma once

namespace wick::cuda {

struct SumOp {
  __device__ float operator()(float a, float b) const { return a + b; }
};
struct MaxOp {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

/// `op` over `v` of the warp's lanes (a butterfly, so every lane gets the same bits).
template <class Op>
__device__ inline float warp_reduce(float v, Op op) {
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

/// Sum of `v` over the warp; every lane gets the total.
__device__ inline float warp_sum(float v) { return warp_reduce(v, SumOp{}); }

/// Maximum of `v` over the warp; every lane gets it.
__device__ inline float warp_max(float v) { return warp_reduce(v, MaxOp{}); }

/// `op` over `v` of the block (blockDim.x ≤ 1024), `identity` its neutral value; every thread gets the result
/// (each warp reduces the warps' partials the same way, so all get the same bits).
template <class Op>
__device__ inline float block_reduce(float v, float identity, Op op) {
  __shared__ float partial[32];
  v = warp_reduce(v, op);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  v = warp_reduce(lane < int(blockDim.x + 31) / 32 ? partial[lane] : identity, op);
  __syncthreads();  // partial[] may be reused by the caller's next reduction
  return v;
}

/// Sum of `v` over the block (blockDim.x ≤ 1024); every thread gets the total.
__device__ inline float block_sum(float v) { return block_reduce(v, 0.0f, SumOp{}); }

/// Maximum of `v` over the block (blockDim.x ≤ 1024); every thread gets it.
__device__ inline float block_max(float v) { return block_reduce(v, -INFINITY, MaxOp{}); }

}  // namespace wick::cuda
