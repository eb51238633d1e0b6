// The training lowering of the one layer description (qwen2.cpp). Forward, it runs each step with the plain ops
// over whole sequences (no KV cache) and records what the step's backward twin will read; backward, it walks the
// recorded steps in reverse, each through its twin (linear_backward for every projection, rmsnorm_backward,
// rope_backward, attention_backward, swiglu_backward, the head's chunked loss). The order of the backward is the
// order the description ran its steps in, so no layer is written twice: change decoder_layer and the backward
// follows.
//
// Gradients flow between steps by the tensors the description passes (the residual stream a.x, a.q, a.attn,
// a.mlp): the step that consumed a tensor adds its gradient; the step that produced it takes that gradient. The
// residual stream is one tensor updated in place (x += o_proj(attn)), so its gradient passes through each add
// unchanged and every norm that read it adds its part.
#pragma once

#include <cstdint>
#include <unordered_map>
#include <variant>
#include <vector>

#include "model/forward.h"

namespace wick {

/// The sequences of one training micro-batch, flattened: spans with past 0 and no cache; ids and positions
/// (0..count−1 per sequence) i32 [T] on the backend; targets i32 on the backend: for a causal LM [T], row t's
/// label of token t + 1 (−100: no loss, and at each sequence's last token); for a sequence classifier
/// [sequences], each sequence's class, read at its last token.
struct TrainBatch {
  std::vector<Span> spans;
  Tensor ids, positions, targets;
  bool last_only = false;  // a classifier: the head reads each sequence's last token
};

/// The gradients a backward pass accumulates (+=), f32 on the model's backend: one LoraGrads per lora_slot
/// (undefined where the adapter has no factors), and the head's when an adapter trains it (modules_to_save).
struct LoraGradients {
  std::vector<LoraGrads> slots;  // [layers · kProjKinds]
  Tensor head;                   // [vocab or num_labels, hidden], or undefined
};

struct TrainOpsOptions {
  float loss_scale = 1.0f;        // the gradients are those of loss_scale · Σ loss
  int64_t loss_chunk_rows = 1024;  // head_cross_entropy's chunk
  bool recompute = false;          // keep only each layer's input; run the layer again in the backward
  bool loss_only = false;          // the head's step gives the loss and no gradient (an eval pass)
  float lora_dropout = 0.0f;       // PEFT's lora_dropout on every LoRA path's input
  uint64_t dropout_seed = 0;       // this pass's masks: each projection call draws from a seed derived from it
};

class TrainOps final : public LayerOps {
 public:
  TrainOps(Backend& b, const ModelConfig& c, const TrainBatch& batch, const LoraSource* lora, LoraGradients& grads,
           const TrainOpsOptions& options);

  void embed(const Tensor& table, Tensor& x) override;
  void attention_inputs(const Normed& h, const Projection& q, const Projection& k, const Projection& v, int64_t layer,
                        Tensor& q_out) override;
  void attention(const Tensor& q, int64_t layer, Tensor& out) override;
  void add_projection(const Tensor& in, const Projection& w, Tensor& x) override;
  void gated_mlp_input(const Normed& m, const Projection& gate, const Projection& up, Tensor& out) override;
  /// Keeps the final norm's rows for the loss; the logits are formed a chunk at a time only by the backward
  /// (`logits` is left as it is).
  void logits(const Normed& n, const Tensor& head, Tensor& logits) override;

  /// Runs the backward twins of the recorded steps of layers ≥ `layer`, last first (layer −1: the embedding too;
  /// the number of layers: the head only). Returns Σ loss when the head's step is among them, else 0.
  double backward_from(int64_t layer);
  /// With recompute: whether layer `layer`'s steps must run again before backward_from(layer), and, when they
  /// must, its input written into `x` (the residual stream).
  bool restore_input(int64_t layer, Tensor& x);

 private:
  struct EmbedStep {
    const void* stream;
  };
  struct QkvStep {
    Tensor x, normed, k, v;  // the stream read (a copy), rmsnorm(x), post-RoPE k and v [T, kv_heads·d]
    const Tensor* norm;
    Projection proj[3];
    const void* stream;      // the stream's storage: its gradient's key
    const void* q_out;
  };
  struct AttentionStep {
    Tensor q, k, v;  // post-RoPE
    const void* q_in;
    const void* out;
  };
  struct ProjectionStep {
    Tensor in;  // a copy
    Projection proj;
    const void* in_key;
    const void* stream;
  };
  struct MlpStep {
    Tensor x, normed, gate, up;  // up and gate before the activation
    const Tensor* norm;
    Projection proj[2];
    const void* stream;
    const void* out;
  };
  struct HeadStep {
    Tensor rows{}, normed{};  // the rows the loss reads (a copy), rmsnorm(rows)
    const Tensor* norm;
    Tensor head;
    const void* stream;
  };
  using Step = std::variant<EmbedStep, QkvStep, AttentionStep, ProjectionStep, MlpStep, HeadStep>;
  struct Recorded {
    int64_t layer;  // −1 the embedding, the number of layers the head
    Step step;
  };

  // A copy of t in new storage.
  Tensor copy(const Tensor& t);
  // rmsnorm(*n.x) into new storage.
  Tensor normalize(const Normed& n);
  void record(int64_t layer, Step step);

  void backward(const EmbedStep& s);
  void backward(const QkvStep& s);
  void backward(const AttentionStep& s);
  void backward(const ProjectionStep& s);
  void backward(const MlpStep& s);
  double backward(const HeadStep& s);
  // The gradient of rmsnorm(x, norm) flowing back into the stream.
  void norm_backward(const Tensor& x, const Tensor& norm, const Tensor& d_normed, const void* stream);
  LoraGrads* grads_of(const Projection& p);
  // The dropout of p's LoRA path in this pass (the same in its backward and in a recomputed forward).
  LoraDropout dropout_of(const Projection& p) const;

  // Gradients of the forward's tensors, by storage: consumers add, the producer takes.
  void add_grad(const void* key, Tensor g);
  Tensor take_grad(const void* key);
  const Tensor& peek_grad(const void* key) const;

  Backend& b_;
  const ModelConfig& c_;
  const TrainBatch& batch_;
  const LoraSource* lora_;
  LoraGradients& grads_;
  TrainOpsOptions options_;
  std::vector<Recorded> tape_;
  std::vector<Tensor> layer_inputs_;  // with recompute: each layer's input stream
  int64_t layer_ = -1;                // the layer whose steps run now
  bool replaying_ = false;            // a layer's steps run again in the backward
  Tensor k_, v_;                      // the current layer's post-RoPE k and v, for its attention step
  std::unordered_map<const void*, Tensor> grad_;
};

/// One training micro-batch through the whole model: forward_pass with TrainOps, then the backward, layer by layer
/// from the head (running a layer's steps again first when `ops` recomputes). Returns Σ loss.
double train_pass(TrainOps& ops, const ModelWeights& w, const Heads& heads, Activations& a);

}  // namespace wick
