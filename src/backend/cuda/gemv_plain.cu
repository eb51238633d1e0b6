// The plain one-row GEMV: a warp per output row streams its weight row with 16-byte loads.
#include "backend/cuda/gemv_plain.h"

#include <cuda_bf16.h>

#include "backend/cuda/reduce.cuh"

namespace wick::cuda {

namespace {

using bf16 = __nv_bfloat16;
// Output rows (warps) per block: 256-thread blocks, small enough that short outputs (a LoRA factor's rank rows)
// still spread over several SMs.
constexpr int kGemvWarps = 8;

template <bool OutF32>
__global__ void gemv_kernel(const bf16* __restrict__ w, const bf16* __restrict__ x, const bf16* __restrict__ bias,
                            void* out, int64_t n, int64_t k, float alpha, float beta) {
  const int64_t row = int64_t(blockIdx.x) * kGemvWarps + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= n) return;
  const uint4* wr = reinterpret_cast<const uint4*>(w + row * k);
  const uint4* xr = reinterpret_cast<const uint4*>(x);
  float acc = 0.0f;
  for (int64_t i = lane; i < k / 8; i += 32) {
    const uint4 wv = __ldg(wr + i), xv = __ldg(xr + i);
    const __nv_bfloat162* wp = reinterpret_cast<const __nv_bfloat162*>(&wv);
    const __nv_bfloat162* xp = reinterpret_cast<const __nv_bfloat162*>(&xv);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float2 a = __bfloat1622float2(wp[j]), b = __bfloat1622float2(xp[j]);
      acc += a.x * b.x + a.y * b.y;
    }
  }
  acc = warp_sum(acc);
  if (lane != 0) return;
  float v = alpha * acc + (bias ? __bfloat162float(bias[row]) : 0.0f);
  if constexpr (OutF32) {
    float* o = static_cast<float*>(out) + row;
    *o = beta != 0.0f ? v + beta * *o : v;
  } else {
    bf16* o = static_cast<bf16*>(out) + row;
    *o = __float2bfloat16(beta != 0.0f ? v + beta * __bfloat162float(*o) : v);
  }
}

}  // namespace

void gemv(const GemvParams& p, cudaStream_t stream) {
  const unsigned blocks = unsigned((p.rows + kGemvWarps - 1) / kGemvWarps);
  const auto* w = static_cast<const bf16*>(p.w);
  const auto* x = static_cast<const bf16*>(p.x);
  const auto* bias = static_cast<const bf16*>(p.bias);
  if (p.out_f32)
    gemv_kernel<true><<<blocks, kGemvWarps * 32, 0, stream>>>(w, x, bias, p.out, p.rows, p.k, p.alpha, p.beta);
  else
    gemv_kernel<false><<<blocks, kGemvWarps * 32, 0, stream>>>(w, x, bias, p.out, p.rows, p.k, p.alpha, p.beta);
}

}  // namespace wick::cuda
