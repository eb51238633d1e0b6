// The steps a decoder layer is written in (qwen2.cpp describes the layer once with them) and the interface each
// way of running them implements: the plain backend ops over any number of tokens (plain_ops.cpp), or the fused
// one-token kernels of a recorded decode step (decode_step.cpp). Another way to run a layer is another LayerOps,
// never another copy of the layer.
#pragma once

#include <cstdint>

#include "model/linear.h"
#include "wick/tensor.h"

namespace wick {

/// rmsnorm(x, weight), computed by the step that consumes it: the plain ops write it out, the fused kernels fold
/// it into their pass over the next weights. Both tensors must outlive the step.
struct Normed {
  const Tensor* x;       // [T, hidden] the residual stream
  const Tensor* weight;  // [hidden]
};

inline Normed rmsnorm(const Tensor& x, const Tensor& weight) { return {&x, &weight}; }

/// One way to run the steps of a decoder layer. x is the residual stream [T, hidden]; every projection goes
/// through the LoRA chokepoint (linear.h) with the adapter the lowering was made for, so each computes
/// y = in·Wᵀ + b + scale·(in·Aᵀ)·Bᵀ with the factors of its (layer, kind). Positions, KV caches and token ids
/// are the lowering's: it was made for one batch.
class LayerOps {
 public:
  virtual ~LayerOps() = default;
  /// x = table[ids].
  virtual void embed(const Tensor& table, Tensor& x) = 0;
  /// q, k, v = h·Wᵀ + b; RoPE on q and k at each token's position; k and v written into layer `layer` of the
  /// cache. q_out [T, heads · head_dim].
  virtual void attention_inputs(const Normed& h, const Projection& q, const Projection& k, const Projection& v,
                                int64_t layer, Tensor& q_out) = 0;
  /// out = softmax(q·kᵀ / √d)·v over the cache of layer `layer`, each token seeing positions up to its own
  /// (causal, grouped-query).  q [T, heads · d]; out [T, heads · d].
  virtual void attention(const Tensor& q, int64_t layer, Tensor& out) = 0;
  /// x += in·Wᵀ: a projection and the residual add after it.
  virtual void add_projection(const Tensor& in, const Projection& w, Tensor& x) = 0;
  /// out = silu(m·W_gateᵀ) ⊙ (m·W_upᵀ).  out [T, ffn].
  virtual void gated_mlp_input(const Normed& m, const Projection& gate, const Projection& up, Tensor& out) = 0;
  /// logits = n·W_headᵀ in f32, for the rows this lowering returns (every token, or the last of each sequence); an
  /// undefined head: logits = n itself, the final-norm hidden states (plain ops only).
  virtual void logits(const Normed& n, const Tensor& head, Tensor& logits) = 0;
};

}  // namespace wick
