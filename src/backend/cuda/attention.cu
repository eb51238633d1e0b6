// Causal grouped-query attention for one sequence: one block per (query, head), four warps splitting the
// visible keys, each warp keeping an online softmax; the warps' partial results are merged at the end.
#include <cuda_bf16.h>

#include <cfloat>

#include "backend/cuda/kernels.h"

namespace wick::cuda {

namespace {

using bf16 = __nv_bfloat16;
constexpr int kWarps = 4;

// Each lane owns head elements lane, lane + 32, ... (E = ceil(D / 32) of them).
template <int D>
__global__ void attention_kernel(const bf16* q, const bf16* k, const bf16* v, const int32_t* positions, bf16* out,
                                 int64_t heads, int64_t kv_heads, float scale) {
  constexpr int E = (D + 31) / 32;
  const int64_t i = blockIdx.x, h = blockIdx.y;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t kvh = h / (heads / kv_heads), visible = int64_t(positions[i]) + 1;
  const bf16* qi = q + (i * heads + h) * D;
  float qr[E], acc[E];
#pragma unroll
  for (int e = 0; e < E; ++e) {
    const int idx = lane + 32 * e;
    qr[e] = idx < D ? __bfloat162float(qi[idx]) * scale : 0.0f;
    acc[e] = 0.0f;
  }
  float m = -FLT_MAX, l = 0.0f;
  for (int64_t j = warp; j < visible; j += kWarps) {
    const bf16* kj = k + (j * kv_heads + kvh) * D;
    float s = 0.0f;
#pragma unroll
    for (int e = 0; e < E; ++e) {
      const int idx = lane + 32 * e;
      if (idx < D) s += qr[e] * __bfloat162float(kj[idx]);
    }
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    const float m_new = fmaxf(m, s);
    const float correction = __expf(m - m_new), p = __expf(s - m_new);
    l = l * correction + p;
    const bf16* vj = v + (j * kv_heads + kvh) * D;
#pragma unroll
    for (int e = 0; e < E; ++e) {
      const int idx = lane + 32 * e;
      acc[e] = acc[e] * correction + (idx < D ? p * __bfloat162float(vj[idx]) : 0.0f);
    }
    m = m_new;
  }
  __shared__ float sm_m[kWarps], sm_l[kWarps], sm_acc[kWarps][E * 32];
  if (lane == 0) sm_m[warp] = m, sm_l[warp] = l;
#pragma unroll
  for (int e = 0; e < E; ++e) sm_acc[warp][lane + 32 * e] = acc[e];
  __syncthreads();
  if (warp != 0) return;
  float m_all = -FLT_MAX;
  for (int w = 0; w < kWarps; ++w) m_all = fmaxf(m_all, sm_m[w]);
  float l_all = 0.0f, weight[kWarps];
  for (int w = 0; w < kWarps; ++w) {
    weight[w] = sm_l[w] > 0.0f ? __expf(sm_m[w] - m_all) : 0.0f;  // warps that saw no key weigh nothing
    l_all += weight[w] * sm_l[w];
  }
  bf16* o = out + (i * heads + h) * D;
#pragma unroll
  for (int e = 0; e < E; ++e) {
    const int idx = lane + 32 * e;
    if (idx >= D) continue;
    float total = 0.0f;
    for (int w = 0; w < kWarps; ++w) total += weight[w] * sm_acc[w][idx];
    o[idx] = __float2bfloat16(total / l_all);
  }
}

template <int D>
void launch(const void* q, const void* k, const void* v, const int32_t* positions, void* out, const AttentionShape& s,
            cudaStream_t stream) {
  const dim3 grid(unsigned(s.queries), unsigned(s.heads));
  attention_kernel<D><<<grid, kWarps * 32, 0, stream>>>(static_cast<const bf16*>(q), static_cast<const bf16*>(k),
                                                        static_cast<const bf16*>(v), positions, static_cast<bf16*>(out),
                                                        s.heads, s.kv_heads, s.scale);
}

}  // namespace

bool attention(const void* q, const void* k, const void* v, const int32_t* positions, void* out,
               const AttentionShape& s, cudaStream_t stream) {
  if (s.queries == 0) return true;
  switch (s.head_dim) {
    case 16: launch<16>(q, k, v, positions, out, s, stream); return true;
    case 32: launch<32>(q, k, v, positions, out, s, stream); return true;
    case 64: launch<64>(q, k, v, positions, out, s, stream); return true;
    case 80: launch<80>(q, k, v, positions, out, s, stream); return true;
    case 96: launch<96>(q, k, v, positions, out, s, stream); return true;
    case 128: launch<128>(q, k, v, positions, out, s, stream); return true;
    case 256: launch<256>(q, k, v, positions, out, s, stream); return true;
    default: return false;
  }
}

}  // namespace wick::cuda
