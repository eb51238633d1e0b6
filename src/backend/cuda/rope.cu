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

// x + bias rounded to bf16, as linear's bias add rounds it (no bias: x).
__device__ inline bf16 biased(bf16 x, const bf16* bias, int64_t j) {
  return bias ? __float2bfloat16(__bfloat162float(x) + __bfloat162float(bias[j])) : x;
}

// One block per token; threads walk (head, pair) over the q heads, then the k heads (rotated, then cached),
// then copy v into its cache. With biases, each element gets its projection's bias first.
__global__ void rope_kv_kernel(RopeKvParams p, double log_theta) {
  bf16* q = static_cast<bf16*>(p.q);
  bf16* k = static_cast<bf16*>(p.k);
  const bf16* v = static_cast<const bf16*>(p.v);
  const bf16 *qb = static_cast<const bf16*>(p.q_bias), *kb = static_cast<const bf16*>(p.k_bias),
             *vb = static_cast<const bf16*>(p.v_bias);
  const int64_t heads = p.heads, kv_heads = p.kv_heads, d = p.head_dim;
  const int64_t t = blockIdx.x, half = d / 2, pos = p.positions[t], row = p.rows ? p.rows[t] : pos;
  for (int64_t idx = threadIdx.x; idx < (heads + kv_heads) * half; idx += blockDim.x) {
    const int64_t h = idx / half, i = idx % half;
    const float inv_freq = float(exp(-log_theta * double(2 * i) / double(d)));
    float s, c;
    sincosf(float(pos) * inv_freq, &s, &c);
    if (h < heads) {
      bf16* x = q + (t * heads + h) * d;
      x[i] = biased(x[i], qb, h * d + i);
      x[i + half] = biased(x[i + half], qb, h * d + i + half);
      rotate(x, i, half, c, s);
    } else {
      const int64_t kh = h - heads;
      bf16* kv = k + (t * kv_heads + kh) * d;
      kv[i] = biased(kv[i], kb, kh * d + i);
      kv[i + half] = biased(kv[i + half], kb, kh * d + i + half);
      rotate(kv, i, half, c, s);
      bf16* dst = static_cast<bf16*>(p.k_cache) + (row * kv_heads + kh) * d;
      dst[i] = kv[i];
      dst[i + half] = kv[i + half];
    }
  }
  for (int64_t idx = threadIdx.x; idx < kv_heads * d; idx += blockDim.x)
    static_cast<bf16*>(p.v_cache)[row * kv_heads * d + idx] = biased(v[t * kv_heads * d + idx], vb, idx);
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
  rope_kv_kernel<<<unsigned(p.tokens), kRopeThreads, 0, stream>>>(p, std::log(p.theta));
}

}  // namespace wick::cuda
