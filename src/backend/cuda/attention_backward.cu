// attention's backward, split into two kernels as FlashAttention-2 splits it, so that no gradient needs atomics and
// the result does not depend on the schedule:
//  1. query_kernel, a block per (query, head): a pass over the visible keys gives the softmax's log Σ exp and
//     delta = Σ_j P_j·dp_j (= dO·O), dp_j = dO·v_j, by an online softmax per warp merged across the warps; a second
//     pass gives dq = scale·Σ_j P_j·(dp_j − delta)·k_j. Both statistics go to `stats` for the second kernel.
//  2. key_kernel, a block per (key, kv head): over the queries that see the key and the query heads of the group,
//     P = exp(scale·q·k − log Σ exp), dv += P·dO, dk += scale·P·(dO·v − delta)·q, summed in registers and added
//     once into the key's rows, which no other block writes.
// Scores are recomputed rather than kept ([queries, heads, keys] would not fit for long sequences). Plain f32 FMAs, a
// warp per (query, key) dot product with its lanes over head_dim: correct first, no tensor cores.
#include "backend/cuda/attention_backward.h"

#include "backend/cuda/backward_common.cuh"
#include "backend/cuda/reduce.cuh"

namespace wick::cuda {

namespace {

using namespace backward_kernels;

constexpr int kWarps = 4;  // per block: they split the keys (query_kernel) or the queries (key_kernel)

// A head vector spread over a warp: lane l holds elements l, l + 32, ... (Slots of them; those past head_dim are 0).
template <int Slots>
struct Lanes {
  float v[Slots];
};

template <int Slots, class T>
__device__ inline Lanes<Slots> load_lanes(const T* p, int d, int lane) {
  Lanes<Slots> r;
#pragma unroll
  for (int s = 0; s < Slots; ++s) r.v[s] = lane + 32 * s < d ? load_f32(p + lane + 32 * s) : 0.0f;
  return r;
}

// a·b over the warp; every lane gets it.
template <int Slots>
__device__ inline float dot(const Lanes<Slots>& a, const Lanes<Slots>& b) {
  float s = 0.0f;
#pragma unroll
  for (int i = 0; i < Slots; ++i) s += a.v[i] * b.v[i];
  return warp_sum(s);
}

// acc += c·x.
template <int Slots>
__device__ inline void axpy(float c, const Lanes<Slots>& x, Lanes<Slots>& acc) {
#pragma unroll
  for (int i = 0; i < Slots; ++i) acc.v[i] += c * x.v[i];
}

// Each warp's `x` into its row of `part` [kWarps, Slots·32] (shared); the caller syncs, then sums with warps_total.
template <int Slots>
__device__ inline void stage(const Lanes<Slots>& x, float (&part)[kWarps][Slots * 32], int warp, int lane) {
#pragma unroll
  for (int s = 0; s < Slots; ++s) part[warp][lane + 32 * s] = x.v[s];
}

template <int Width>
__device__ inline float warps_total(const float (&part)[kWarps][Width], int e) {
  float t = 0.0f;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) t += part[w][e];
  return t;
}

// Keys query i sees: [0, positions[i]], clamped to the cache so that a bad position reads nothing outside it.
__device__ inline int64_t visible_keys(const AttentionBackwardParams& p, int64_t i) {
  const int64_t n = int64_t(p.positions[i]) + 1;
  return n < 0 ? 0 : n > p.capacity ? p.capacity : n;
}

// An online softmax over a warp's share of the keys: the max score, Σ e^(s − max) and Σ e^(s − max)·dp.
struct Online {
  float max, sum, dsum;
};

__device__ inline void online_add(Online& o, float s, float dp) {
  const float m = fmaxf(o.max, s), c = expf(o.max - m), e = expf(s - m);
  o = {m, o.sum * c + e, o.dsum * c + e * dp};
}

// The block's softmax statistics, the same in every thread: log Σ exp, and delta = Σ P·dp.
struct Softmax {
  float log_sum, delta;
};

// The warps' online states merged (a warp that saw no key holds max −∞ and adds nothing).
__device__ Softmax merge_warps(const Online& o, int warp, int lane) {
  __shared__ float part[3][kWarps];
  if (lane == 0) {
    part[0][warp] = o.max;
    part[1][warp] = o.sum;
    part[2][warp] = o.dsum;
  }
  __syncthreads();
  float mx = -INFINITY, sum = 0.0f, dsum = 0.0f;
  for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, part[0][w]);
  for (int w = 0; w < kWarps; ++w) {
    const float c = part[0][w] == -INFINITY ? 0.0f : expf(part[0][w] - mx);
    sum += part[1][w] * c;
    dsum += part[2][w] * c;
  }
  return {mx + logf(sum), dsum / sum};
}

template <class T, int Slots>
__global__ void __launch_bounds__(kWarps * 32) query_kernel(AttentionBackwardParams p) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, d = int(p.head_dim);
  const int64_t i = blockIdx.x, h = blockIdx.y, at = (i * p.heads + h) * d, stride = p.kv_heads * d;
  const int64_t kv = h / (p.heads / p.kv_heads) * d;  // the kv head's offset in a cache row
  const T* k = static_cast<const T*>(p.k) + kv;
  const T* v = static_cast<const T*>(p.v) + kv;
  const Lanes<Slots> q = load_lanes<Slots>(static_cast<const T*>(p.q) + at, d, lane);
  const Lanes<Slots> g = load_lanes<Slots>(static_cast<const T*>(p.d_out) + at, d, lane);
  const int64_t visible = visible_keys(p, i);
  Online o{-INFINITY, 0.0f, 0.0f};
  for (int64_t j = warp; j < visible; j += kWarps)
    online_add(o, p.scale * dot(q, load_lanes<Slots>(k + j * stride, d, lane)),
               dot(g, load_lanes<Slots>(v + j * stride, d, lane)));
  const Softmax sm = merge_warps(o, warp, lane);
  Lanes<Slots> dq{};
  for (int64_t j = warp; j < visible; j += kWarps) {
    const Lanes<Slots> kj = load_lanes<Slots>(k + j * stride, d, lane);
    const float s = p.scale * dot(q, kj), dp = dot(g, load_lanes<Slots>(v + j * stride, d, lane));
    axpy(expf(s - sm.log_sum) * (dp - sm.delta), kj, dq);
  }
  __shared__ float part[kWarps][Slots * 32];
  stage(dq, part, warp, lane);
  __syncthreads();
  T* out = static_cast<T*>(p.dq) + at;
  for (int e = threadIdx.x; e < d; e += blockDim.x) store_f32(out + e, p.scale * warps_total(part, e));
  if (threadIdx.x == 0) {
    p.stats[i * p.heads + h] = sm.log_sum;
    p.stats[(p.queries + i) * p.heads + h] = sm.delta;
  }
}

template <class T, int Slots>
__global__ void __launch_bounds__(kWarps * 32) key_kernel(AttentionBackwardParams p) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, d = int(p.head_dim);
  const int64_t j = blockIdx.x, kvh = blockIdx.y, group = p.heads / p.kv_heads, row = (j * p.kv_heads + kvh) * d;
  const Lanes<Slots> k = load_lanes<Slots>(static_cast<const T*>(p.k) + row, d, lane);
  const Lanes<Slots> v = load_lanes<Slots>(static_cast<const T*>(p.v) + row, d, lane);
  Lanes<Slots> dk{}, dv{};
  bool seen = false;
  for (int64_t idx = warp; idx < p.queries * group; idx += kWarps) {
    const int64_t i = idx / group, h = kvh * group + idx % group, at = (i * p.heads + h) * d;
    if (visible_keys(p, i) <= j) continue;
    seen = true;
    const Lanes<Slots> q = load_lanes<Slots>(static_cast<const T*>(p.q) + at, d, lane);
    const Lanes<Slots> g = load_lanes<Slots>(static_cast<const T*>(p.d_out) + at, d, lane);
    const float prob = expf(p.scale * dot(k, q) - p.stats[i * p.heads + h]);
    axpy(prob, g, dv);
    axpy(prob * (dot(v, g) - p.stats[(p.queries + i) * p.heads + h]), q, dk);
  }
  if (!__syncthreads_or(seen)) return;  // no query sees this key: its gradient rows stay untouched
  __shared__ float part_k[kWarps][Slots * 32], part_v[kWarps][Slots * 32];
  stage(dk, part_k, warp, lane);
  stage(dv, part_v, warp, lane);
  __syncthreads();
  T* dk_row = static_cast<T*>(p.dk) + row;
  T* dv_row = static_cast<T*>(p.dv) + row;
  for (int e = threadIdx.x; e < d; e += blockDim.x) {
    store_f32(dk_row + e, load_f32(dk_row + e) + p.scale * warps_total(part_k, e));
    store_f32(dv_row + e, load_f32(dv_row + e) + warps_total(part_v, e));
  }
}

template <class T, int Slots>
void launch(const AttentionBackwardParams& p, cudaStream_t stream) {
  query_kernel<T, Slots><<<dim3(unsigned(p.queries), unsigned(p.heads)), kWarps * 32, 0, stream>>>(p);
  key_kernel<T, Slots><<<dim3(unsigned(p.capacity), unsigned(p.kv_heads)), kWarps * 32, 0, stream>>>(p);
}

// The fewest lane slots that hold a head vector: registers scale with them.
template <class T>
void launch_for_head_dim(const AttentionBackwardParams& p, cudaStream_t stream) {
  if (p.head_dim <= 32)
    launch<T, 1>(p, stream);
  else if (p.head_dim <= 64)
    launch<T, 2>(p, stream);
  else if (p.head_dim <= 128)
    launch<T, 4>(p, stream);
  else
    launch<T, 8>(p, stream);
}

}  // namespace

bool attention_backward(const AttentionBackwardParams& p, cudaStream_t stream) {
  if (p.head_dim > kMaxBackwardHeadDim) return false;
  if (p.queries == 0 || p.capacity == 0 || p.heads == 0) return true;
  with_element(p.f32, [&](auto zero) { launch_for_head_dim<decltype(zero)>(p, stream); });
  return true;
}

}  // namespace wick::cuda
