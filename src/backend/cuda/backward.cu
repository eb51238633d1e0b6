// Training kernels: the backward twins of rmsnorm, rope, swiglu, the loss and the embedding, each one template over
// its element type (bf16 or f32), f32 arithmetic.
#include "backend/cuda/backward.h"

#include <cmath>

#include "backend/cuda/backward_common.cuh"
#include "backend/dropout_mask.h"
#include "backend/cuda/reduce.cuh"

namespace wick::cuda {

namespace {

using namespace backward_kernels;

constexpr int kThreads = 256;     // per block: a common size for memory-bound work
constexpr int kRowThreads = 512;  // per block of a row-wise op: rows run to thousands (hidden) or a vocabulary
// Grid-stride launches stop growing here (a million blocks, far more than any GPU holds at once).
constexpr int64_t kMaxBlocks = 65535 * 16;
constexpr int32_t kIgnoredTarget = -100;  // PyTorch's ignore_index

// Blocks of kThreads for n elements, at least one.
unsigned grid_for(int64_t n) {
  const int64_t g = (n + kThreads - 1) / kThreads;
  return unsigned(g < kMaxBlocks ? (g > 0 ? g : 1) : kMaxBlocks);
}

// y_i = w_i·x_i·r, r = (mean(x²) + eps)^(-1/2): dx_i = r·w_i·g_i − x_i·r³·mean_j(w_j·g_j·x_j).
template <class T>
__global__ void rmsnorm_backward_kernel(const T* x, const T* w, const T* g, T* dx, int64_t n, float eps) {
  const int64_t row = int64_t(blockIdx.x) * n;
  float ss = 0.0f, wgx = 0.0f;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const float xv = load_f32(x + row + i);
    ss += xv * xv;
    wgx += load_f32(w + i) * load_f32(g + row + i) * xv;
  }
  ss = block_sum(ss);
  wgx = block_sum(wgx);
  const float inv = rsqrtf(ss / float(n) + eps), coef = inv * inv * inv * wgx / float(n);
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
    store_f32(dx + row + i, inv * load_f32(w + i) * load_f32(g + row + i) - coef * load_f32(x + row + i));
}

// A thread per (token, head, pair): the rotation of rope.cu's rope_kernel by the opposite angle.
template <class T>
__global__ void rope_backward_kernel(T* x, const int32_t* pos, int64_t tokens, int64_t heads, int64_t d,
                                     double log_theta) {
  const int64_t half = d / 2;
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= tokens * heads * half) return;
  const int64_t i = idx % half, th = idx / half, t = th / heads;
  const float inv_freq = float(exp(-log_theta * double(2 * i) / double(d)));
  float s, c;
  sincosf(float(pos[t]) * inv_freq, &s, &c);
  T* v = x + th * d;
  const float a = load_f32(v + i), b = load_f32(v + i + half);
  store_f32(v + i, a * c + b * s);
  store_f32(v + i + half, b * c - a * s);
}

// silu(g) = g·σ(g); silu'(g) = σ(g)·(1 + g·(1 − σ(g))).
template <class T>
__global__ void swiglu_backward_kernel(const T* gate, const T* up, const T* d_out, T* d_gate, T* d_up, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float g = load_f32(gate + i), u = load_f32(up + i), go = load_f32(d_out + i);
    const float sig = 1.0f / (1.0f + expf(-g));
    store_f32(d_up + i, go * g * sig);
    store_f32(d_gate + i, go * u * sig * (1.0f + g * (1.0f - sig)));
  }
}

template <class T>
__global__ void dropout_kernel(const T* x, T* out, int64_t n, float p, uint64_t seed) {
  const float keep_scale = 1.0f / (1.0f - p);
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    store_f32(out + i, dropout_keeps(seed, uint64_t(i), p) ? load_f32(x + i) * keep_scale : 0.0f);
}

// One block per row: max and Σ exp in f32 by block reductions, the row's loss formed from them in double.
template <class T>
__global__ void cross_entropy_kernel(const float* logits, const int32_t* targets, T* d_logits, CrossEntropyRow* rows,
                                     int64_t classes, float scale) {
  const float* x = logits + int64_t(blockIdx.x) * classes;
  T* dx = d_logits + int64_t(blockIdx.x) * classes;
  const int32_t target = targets[blockIdx.x];
  const bool bad = target != kIgnoredTarget && (target < 0 || target >= classes);
  if (target == kIgnoredTarget || bad) {  // the same for the whole block: no thread is left at a barrier
    for (int64_t c = threadIdx.x; c < classes; c += blockDim.x) store_f32(dx + c, 0.0f);
    if (threadIdx.x == 0) rows[blockIdx.x] = {0.0, target, bad ? 1 : 0};
    return;
  }
  float mx = -INFINITY;
  for (int64_t c = threadIdx.x; c < classes; c += blockDim.x) mx = fmaxf(mx, x[c]);
  mx = block_max(mx);
  float sum = 0.0f;
  for (int64_t c = threadIdx.x; c < classes; c += blockDim.x) sum += expf(x[c] - mx);
  sum = block_sum(sum);
  const float log_sum = mx + logf(sum);
  for (int64_t c = threadIdx.x; c < classes; c += blockDim.x)
    store_f32(dx + c, scale * (expf(x[c] - log_sum) - (c == target ? 1.0f : 0.0f)));
  if (threadIdx.x == 0) rows[blockIdx.x] = {double(mx) + log(double(sum)) - double(x[target]), target, 0};
}

// One block per token, its threads over the row: atomics because a repeated id adds into the same row.
template <class T>
__global__ void embedding_backward_kernel(const int32_t* ids, const T* d_out, float* d_table, int64_t vocab,
                                          int64_t hidden) {
  const int32_t id = ids[blockIdx.x];
  if (id < 0 || id >= vocab) return;
  const T* g = d_out + int64_t(blockIdx.x) * hidden;
  float* row = d_table + int64_t(id) * hidden;
  for (int64_t e = threadIdx.x; e < hidden; e += blockDim.x) atomicAdd(row + e, load_f32(g + e));
}

}  // namespace

void rmsnorm_backward(const RmsNormBackwardParams& p, cudaStream_t stream) {
  if (p.rows == 0) return;
  with_element(p.f32, [&](auto zero) {
    using T = decltype(zero);
    rmsnorm_backward_kernel<T><<<unsigned(p.rows), kRowThreads, 0, stream>>>(
        static_cast<const T*>(p.x), static_cast<const T*>(p.weight), static_cast<const T*>(p.d_out),
        static_cast<T*>(p.dx), p.n, p.eps);
  });
}

void rope_backward(const RopeBackwardParams& p, cudaStream_t stream) {
  const int64_t total = p.tokens * p.heads * (p.head_dim / 2);
  if (total == 0) return;
  with_element(p.f32, [&](auto zero) {
    using T = decltype(zero);
    rope_backward_kernel<T><<<unsigned((total + kThreads - 1) / kThreads), kThreads, 0, stream>>>(
        static_cast<T*>(p.dx), p.positions, p.tokens, p.heads, p.head_dim, std::log(p.theta));
  });
}

void swiglu_backward(const SwigluBackwardParams& p, cudaStream_t stream) {
  if (p.n == 0) return;
  with_element(p.f32, [&](auto zero) {
    using T = decltype(zero);
    swiglu_backward_kernel<T><<<grid_for(p.n), kThreads, 0, stream>>>(
        static_cast<const T*>(p.gate), static_cast<const T*>(p.up), static_cast<const T*>(p.d_out),
        static_cast<T*>(p.d_gate), static_cast<T*>(p.d_up), p.n);
  });
}

void dropout(const DropoutParams& p, cudaStream_t stream) {
  if (p.n == 0) return;
  with_element(p.f32, [&](auto zero) {
    using T = decltype(zero);
    dropout_kernel<T><<<grid_for(p.n), kThreads, 0, stream>>>(static_cast<const T*>(p.x), static_cast<T*>(p.out), p.n,
                                                             p.p, p.seed);
  });
}

void cross_entropy(const CrossEntropyParams& p, cudaStream_t stream) {
  if (p.rows == 0) return;
  with_element(p.d_f32, [&](auto zero) {
    using T = decltype(zero);
    cross_entropy_kernel<T><<<unsigned(p.rows), kRowThreads, 0, stream>>>(
        p.logits, p.targets, static_cast<T*>(p.d_logits), p.rows_out, p.classes, p.scale);
  });
}

void embedding_backward(const EmbeddingBackwardParams& p, cudaStream_t stream) {
  if (p.tokens == 0 || p.hidden == 0) return;
  with_element(p.d_out_f32, [&](auto zero) {
    using T = decltype(zero);
    embedding_backward_kernel<T><<<unsigned(p.tokens), kThreads, 0, stream>>>(
        p.ids, static_cast<const T*>(p.d_out), p.d_table, p.vocab, p.hidden);
  });
}

}  // namespace wick::cuda
