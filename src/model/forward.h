// The Qwen2 forward pass as one description (qwen2.cpp) and the buffers it runs in, shared by the plain ops
// (plain_ops.cpp) and the recorded decode steps (decode_step.cpp).
#pragma once

#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "model/layer_ops.h"
#include "model/weights.h"
#include "wick/config.h"
#include "wick/kv_cache.h"

namespace wick {

// Activations over T tokens (all on the backend, compute dtype).
struct Activations {
  Tensor x;       // [T, hidden]  residual stream
  Tensor q;       // [T, heads · head_dim]
  Tensor attn;    // [T, heads · head_dim]  attention output, o_proj's input
  Tensor mlp;     // [T, ffn]  silu(gate) ⊙ up, down_proj's input
  // Scratch of the plain ops (the fused kernels keep these in registers).
  Tensor normed;  // [T, hidden]
  Tensor k, v;    // [T, kv_heads · head_dim]
  Tensor proj;    // [T, hidden]  output of o_proj / down_proj before its residual add
  Tensor up;      // [T, ffn]

  Activations(Backend& b, const ModelConfig& c, int64_t T);
};

// The embedding and output head in effect (an adapter may replace either: PEFT modules_to_save).
struct Heads {
  Tensor embed;  // [vocab, hidden]
  Tensor head;   // [vocab or num_labels, hidden]
};

/// The base model's embedding and head, or the adapter's replacements of them.
Heads pick_heads(const ModelWeights& w, const LoraSource* lora);

// Inputs and outputs of the final norm and head for `rows` rows. An undefined head: the final norm's output is the
// result (the hidden states an embedder pools).
struct HeadBuffers {
  bool last_only;  // gather each sequence's last token first
  Tensor last;     // [rows, hidden] when last_only
  Tensor normed;   // [rows, hidden]
  // [rows, head rows] f32 — the vocabulary, or a rank's slice of it (tensor parallelism), or num_labels; without a
  // head [rows, hidden] in the compute dtype
  Tensor logits;

  HeadBuffers(Backend& b, const ModelConfig& c, const Tensor& head, int64_t rows, bool last_only);
};

// Where one sequence's new tokens sit in the flattened batch, and where its keys and values are: a contiguous
// cache, or (cache null) rows of a KVBlockPool (PlainBatch::paged).
struct Span {
  int64_t begin, count, past;
  KVCache* cache;
  const LoraSource* lora = nullptr;  // this sequence's adapter, in a batch whose sequences carry their own
};

/// A batch flattened: where each sequence's tokens sit, and every token's id and position; paged, every token's pool
/// row (slots), the block tables it reads (tables from table_starts[t]) and the longest context.
struct FlatBatch {
  std::vector<Span> spans;
  std::vector<int32_t> ids, positions;
  std::vector<int32_t> slots, tables, table_starts;
  int64_t block_size = 1, max_visible = 0;
};

/// Attention over a model's heads: scale 1/√head_dim.
AttentionParams attention_params(const ModelConfig& c);

/// One decoder layer: norm → self-attention → residual → norm → MLP → residual, each step run by `ops`; a.x is the
/// residual stream, in and out.
void decoder_layer(LayerOps& ops, const LayerWeights& w, int64_t layer, Activations& a);

/// The whole model: embedding → decoder layers → final norm → head, each step run by `ops`; logits as
/// ops.logits() places them.
void forward_pass(LayerOps& ops, const ModelWeights& w, const Heads& heads, Activations& a, Tensor& logits);

}  // namespace wick
