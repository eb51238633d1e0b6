// Fused kernels for the decode path: a bandwidth-bound GEMV with bias, RoPE with the KV-cache write, and the
// residual add folded into the next RMSNorm. Each replaces several launches of the plain ops.
#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>

#include "backend/cuda/kernels.h"
#include "backend/cuda/reduce.cuh"

namespace wick::cuda {

namespace {

using bf16 = __nv_bfloat16;
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

__device__ void rotate(bf16* v, int64_t i, int64_t half, float c, float s) {
  const float a = __bfloat162float(v[i]), b = __bfloat162float(v[i + half]);
  v[i] = __float2bfloat16(a * c - b * s);
  v[i + half] = __float2bfloat16(b * c + a * s);
}

// One block per token; threads walk (head, pair) over the q heads, then the k heads (rotated, then cached),
// then copy v into its cache.
__global__ void rope_kv_kernel(bf16* q, bf16* k, const bf16* v, const int32_t* positions, bf16* k_cache,
                               bf16* v_cache, int64_t heads, int64_t kv_heads, int64_t d, double log_theta) {
  const int64_t t = blockIdx.x, half = d / 2, pos = positions[t];
  for (int64_t idx = threadIdx.x; idx < (heads + kv_heads) * half; idx += blockDim.x) {
    const int64_t h = idx / half, i = idx % half;
    const float inv_freq = float(exp(-log_theta * double(2 * i) / double(d)));
    float s, c;
    sincosf(float(pos) * inv_freq, &s, &c);
    if (h < heads) {
      rotate(q + (t * heads + h) * d, i, half, c, s);
    } else {
      const int64_t kh = h - heads;
      bf16* kv = k + (t * kv_heads + kh) * d;
      rotate(kv, i, half, c, s);
      bf16* dst = k_cache + (pos * kv_heads + kh) * d;
      dst[i] = kv[i];
      dst[i + half] = kv[i + half];
    }
  }
  for (int64_t idx = threadIdx.x; idx < kv_heads * d; idx += blockDim.x)
    v_cache[pos * kv_heads * d + idx] = v[t * kv_heads * d + idx];
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

// x = embed[id]; table = the source table, 8 bytes at a time (a LoraEntry table is a multiple of 8 bytes).
__global__ void begin_step_kernel(const bf16* embed, const int32_t* id, bf16* x, int64_t hidden,
                                  const uint2* const* source, uint2* table, int64_t words) {
  const bf16* row = embed + int64_t(*id) * hidden;
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) x[i] = row[i];
  const uint2* src = *source;
  for (int64_t i = threadIdx.x; i < words; i += blockDim.x) table[i] = src[i];
}

}  // namespace

void begin_step(const void* embed, const int32_t* id, void* x, int64_t hidden, const void* source, void* table,
                int64_t table_bytes, cudaStream_t stream) {
  begin_step_kernel<<<1, 512, 0, stream>>>(static_cast<const bf16*>(embed), id, static_cast<bf16*>(x), hidden,
                                           static_cast<const uint2* const*>(source), static_cast<uint2*>(table),
                                           table_bytes / 8);
}

void gemv(const void* w, const void* x, const void* bias, void* out, bool out_f32, int64_t n, int64_t k, float alpha,
          float beta, cudaStream_t stream) {
  const unsigned blocks = unsigned((n + kGemvWarps - 1) / kGemvWarps);
  if (out_f32)
    gemv_kernel<true><<<blocks, kGemvWarps * 32, 0, stream>>>(static_cast<const bf16*>(w), static_cast<const bf16*>(x),
                                                              static_cast<const bf16*>(bias), out, n, k, alpha, beta);
  else
    gemv_kernel<false><<<blocks, kGemvWarps * 32, 0, stream>>>(static_cast<const bf16*>(w), static_cast<const bf16*>(x),
                                                               static_cast<const bf16*>(bias), out, n, k, alpha, beta);
}

void rope_kv(void* q, void* k, const void* v, const int32_t* positions, void* k_cache, void* v_cache, int64_t tokens,
             int64_t heads, int64_t kv_heads, int64_t d, double theta, cudaStream_t stream) {
  if (tokens == 0) return;
  rope_kv_kernel<<<unsigned(tokens), 256, 0, stream>>>(static_cast<bf16*>(q), static_cast<bf16*>(k),
                                                       static_cast<const bf16*>(v), positions,
                                                       static_cast<bf16*>(k_cache), static_cast<bf16*>(v_cache), heads,
                                                       kv_heads, d, std::log(theta));
}

void add_rmsnorm(void* x, const void* delta, const void* weight, void* normed, int64_t rows, int64_t n, float eps,
                 cudaStream_t stream) {
  if (rows == 0) return;
  const int block = n >= 2048 ? 512 : n >= 512 ? 256 : 128;
  add_rmsnorm_kernel<<<unsigned(rows), block, 0, stream>>>(static_cast<bf16*>(x), static_cast<const bf16*>(delta),
                                                           static_cast<const bf16*>(weight), static_cast<bf16*>(normed),
                                                           n, eps);
}

}  // namespace wick::cuda
