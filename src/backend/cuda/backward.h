// The CUDA backend's training kernels (backward.cu): the backward twins of rmsnorm, rope, swiglu, the loss and the
// embedding (attention's is attention_backward.h; matmul is cuBLAS). Pointers are device pointers; tensors hold bf16
// (the compute dtype) or f32 as each `f32` flag says, with f32 arithmetic inside.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace wick::cuda {

/// dx = ∂/∂x of Σ d_out ⊙ rmsnorm(x, weight, eps): one block per row, both row sums by block reductions.
struct RmsNormBackwardParams {
  const void* x = nullptr;       // [rows, n]
  const void* weight = nullptr;  // [n]
  const void* d_out = nullptr;   // [rows, n]
  void* dx = nullptr;            // [rows, n], written (may alias d_out)
  int64_t rows = 0, n = 0;
  float eps = 0.0f;
  bool f32 = false;  // every tensor f32, else bf16
};
void rmsnorm_backward(const RmsNormBackwardParams& p, cudaStream_t stream);

/// rope's transpose in place: each pair (i, i + d/2) of each head turned by −position·θ^(-2i/d), the angle in f32
/// as rope.cu computes it.
struct RopeBackwardParams {
  void* dx = nullptr;                  // [tokens, heads, head_dim]
  const int32_t* positions = nullptr;  // [tokens]
  int64_t tokens = 0, heads = 0, head_dim = 0;
  double theta = 0.0;  // RoPE base
  bool f32 = false;    // dx f32, else bf16
};
void rope_backward(const RopeBackwardParams& p, cudaStream_t stream);

/// The gradients of out = silu(gate) ⊙ up, elementwise over n elements.
struct SwigluBackwardParams {
  const void* gate = nullptr;
  const void* up = nullptr;
  const void* d_out = nullptr;
  void* d_gate = nullptr;  // written
  void* d_up = nullptr;    // written
  int64_t n = 0;
  bool f32 = false;  // every tensor f32, else bf16
};
void swiglu_backward(const SwigluBackwardParams& p, cudaStream_t stream);

/// What cross_entropy leaves for the host per row: the host sums the losses in row order (the total does not
/// depend on the launch) and reports the first bad target.
struct CrossEntropyRow {
  double loss = 0.0;   // −log softmax(logits)[target]; 0 for an ignored or bad row
  int32_t target = 0;  // the target as read
  int32_t bad = 0;     // 1: the target is outside [0, classes) and not −100 (its d_logits row is zeroed)
};

/// Per row: the loss into `rows_out` and d_logits = scale · (softmax − onehot(target)), 0 on ignored rows (target
/// −100). One block per row: its max and Σ exp by block reductions, then a pass writing the gradient.
struct CrossEntropyParams {
  const float* logits = nullptr;     // [rows, classes]
  const int32_t* targets = nullptr;  // [rows]
  void* d_logits = nullptr;          // [rows, classes], written
  CrossEntropyRow* rows_out = nullptr;
  int64_t rows = 0, classes = 0;
  float scale = 1.0f;
  bool d_f32 = false;  // d_logits f32, else bf16
};
void cross_entropy(const CrossEntropyParams& p, cudaStream_t stream);

/// d_table[ids[t], :] += d_out[t, :] by f32 atomics (a repeated id adds twice); ids outside [0, vocab) are skipped
/// (the ids live on the device; callers validate them).
struct EmbeddingBackwardParams {
  const int32_t* ids = nullptr;  // [tokens]
  const void* d_out = nullptr;   // [tokens, hidden]
  float* d_table = nullptr;      // [vocab, hidden]
  int64_t tokens = 0, vocab = 0, hidden = 0;
  bool d_out_f32 = false;  // d_out f32, else bf16
};
void embedding_backward(const EmbeddingBackwardParams& p, cudaStream_t stream);

/// out = x ⊙ keep / (1 − p) with keep = dropout_keeps(seed, i, p) (backend/dropout_mask.h): the CPU's mask.
struct DropoutParams {
  const void* x = nullptr;
  void* out = nullptr;  // may alias x
  int64_t n = 0;
  float p = 0.0f;
  uint64_t seed = 0;
  bool f32 = false;  // both f32, else bf16
};
void dropout(const DropoutParams& p, cudaStream_t stream);

}  // namespace wick::cuda
