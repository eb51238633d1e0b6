// Rotary position embedding, alone (rope) and with the KV-cache write (rope_kv).
#include "backend/cuda/rope.h"

#include <cuda_bf16.h>

#include <cmath>

namespace wick::cuda {

namespace {

using bf16 = __nv_bfloat16;
constexpr int kRopeThreads = 256;  // per block: a thread per (head, pair), a common block size

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

__device__ void rotate(bf16* v, int64_t i, int64_t half, float c, float s) {
  const float a = __bfloat162float(v[i]), b = __bfloat162float(v[i + half]);
  v[i] = __float2bfloat16(a * c - b * s);
  v[i + half] = __float2bfloat16(b * c + a * s);
}

// One block per token; threads walk (head, pair) over the q heads, then the k heads (rotated, then cached),
// then copy v into its cache.
__global__ void rope_kv_kernel(bf16* q, bf16* k, const bf16* v, const int32_t* positions, const int32_t* rows,
                               bf16* k_cache, bf16* v_cache, int64_t heads, int64_t kv_heads, int64_t d,
                               double log_theta) {
  const int64_t t = blockIdx.x, half = d / 2, pos = positions[t], row = rows ? rows[t] : pos;
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
      bf16* dst = k_cache + (row * kv_heads + kh) * d;
      dst[i] = kv[i];
      dst[i + half] = kv[i + half];
    }
  }
  for (int64_t idx = threadIdx.x; idx < kv_heads * d; idx += blockDim.x)
    v_cache[row * kv_heads * d + idx] = v[t * kv_heads * d + idx];
}

}  // namespace

void rope(void* x, const int32_t* pos, int64_t tokens, int64_t heads, int64_t d, double theta, cudaStream_t stream) {
  const int64_t total = tokens * heads * (d / 2);
  if (total == 0) return;
  rope_kernel<<<unsigned((total + kRopeThreads - 1) / kRopeThreads), kRopeThreads, 0, stream>>>(
      static_cast<bf16*>(x), pos, tokens, heads, d, std::log(theta));
}

void rope_kv(const RopeKvParams& p, cudaStream_t stream) {
  if (p.tokens == 0) return;
  rope_kv_kernel<<<unsigned(p.tokens), kRopeThreads, 0, stream>>>(
      static_cast<bf16*>(p.q), static_cast<bf16*>(p.k), static_cast<const bf16*>(p.v), p.positions, p.rows,
      static_cast<bf16*>(p.k_cache), static_cast<bf16*>(p.v_cache), p.heads, p.kv_heads, p.head_dim,
      std::log(p.theta));
}

}  // namespace wick::cuda
