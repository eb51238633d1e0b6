// The Qwen2 architecture, written once: a decoder layer and the whole forward pass as steps of LayerOps, which the
// plain ops (any number of tokens, CPU and GPU) and the fused one-token kernels (recorded decode steps) each run.
#include <cmath>

#include "model/forward.h"
#include "model/train_ops.h"

namespace wick {

Activations::Activations(Backend& b, const ModelConfig& c, int64_t T) {
  const DType dt = b.compute_dtype();
  x = b.alloc({T, c.hidden_size}, dt);
  q = b.alloc({T, c.q_dim()}, dt);
  attn = b.alloc({T, c.q_dim()}, dt);
  mlp = b.alloc({T, c.intermediate_size}, dt);
  normed = b.alloc({T, c.hidden_size}, dt);
  k = b.alloc({T, c.kv_dim()}, dt);
  v = b.alloc({T, c.kv_dim()}, dt);
  proj = b.alloc({T, c.hidden_size}, dt);
  up = b.alloc({T, c.intermediate_size}, dt);
}

HeadBuffers::HeadBuffers(Backend& b, const ModelConfig& c, const Tensor& head, int64_t rows, bool last)
    : last_only(last),
      last(last ? b.alloc({rows, c.hidden_size}, b.compute_dtype()) : Tensor()),
      normed(b.alloc({rows, c.hidden_size}, b.compute_dtype())),
      // f32 logits on every backend; without a head, the hidden states in the compute dtype
      logits(head.defined() ? b.alloc({rows, head.dim(0)}, DType::f32)
                            : b.alloc({rows, c.hidden_size}, b.compute_dtype())) {}

Heads pick_heads(const ModelWeights& w, const LoraSource* lora) {
  return {.embed = lora && lora->embedding() ? *lora->embedding() : w.embed,
          .head = lora && lora->head() ? *lora->head() : w.head};
}

AttentionParams attention_params(const ModelConfig& c) {
  return {.num_heads = c.num_heads, .num_kv_heads = c.num_kv_heads, .head_dim = c.head_dim,
          .scale = float(1.0 / std::sqrt(double(c.head_dim)))};
}

// One decoder layer, top to bottom as the paper draws it: norm → self-attention → residual → norm → MLP →
// residual.
void decoder_layer(LayerOps& ops, const LayerWeights& w, int64_t layer, Activations& a) {
  ops.attention_inputs(rmsnorm(a.x, w.input_norm), w.q, w.k, w.v, layer, a.q);  // q, k, v; RoPE; KV cache
  ops.attention(a.q, layer, a.attn);                                              // causal GQA
  ops.add_projection(a.attn, w.o, a.x);                                           // x += o_proj(attn)
  ops.gated_mlp_input(rmsnorm(a.x, w.post_attention_norm), w.gate, w.up, a.mlp);  // silu(gate) ⊙ up
  ops.add_projection(a.mlp, w.down, a.x);                                         // x += down_proj(mlp)
}

void forward_pass(LayerOps& ops, const ModelWeights& w, const Heads& heads, Activations& a, Tensor& logits) {
  ops.embed(heads.embed, a.x);
  for (size_t l = 0; l < w.layers.size(); ++l) decoder_layer(ops, w.layers[l], int64_t(l), a);
  ops.logits(rmsnorm(a.x, w.final_norm), heads.head, logits);
}

// Training: the same forward, then its steps' backward twins in reverse order, the head first. With recomputation
// (gradient checkpointing) the forward kept only each layer's input; the layer runs again from it just before its
// backward.
double train_pass(TrainOps& ops, const ModelWeights& w, const Heads& heads, Activations& a) {
  Tensor no_logits;  // the training lowering's head keeps its rows for the loss instead
  forward_pass(ops, w, heads, a, no_logits);
  const int64_t layers = int64_t(w.layers.size());
  const double loss = ops.backward_from(layers);
  for (int64_t l = layers - 1; l >= 0; --l) {
    if (ops.restore_input(l, a.x)) decoder_layer(ops, w.layers[size_t(l)], l, a);
    ops.backward_from(l);
  }
  ops.backward_from(-1);
  return loss;
}

}  // namespace wick
