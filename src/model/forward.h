// Buffers of one forward pass, shared by the eager path and the recorded decode graphs (model_impl.h).
#pragma once

#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "wick/config.h"
#include "wick/kv_cache.h"

namespace wick {

// Activations over T tokens (all on the backend, compute dtype).
struct Activations {
  Tensor x;       // [T, hidden]  residual stream
  Tensor normed;  // [T, hidden]
  Tensor q;       // [T, heads · head_dim]
  Tensor k, v;    // [T, kv_heads · head_dim]
  Tensor attn;    // [T, heads · head_dim]
  Tensor proj;    // [T, hidden]  output of o_proj / down_proj
  Tensor gate;    // [T, ffn]
  Tensor up;      // [T, ffn]

  Activations(Backend& b, const ModelConfig& c, int64_t T);
};

// The embedding and output head in effect (an adapter may replace either: PEFT modules_to_save).
struct Heads {
  Tensor embed;  // [vocab, hidden]
  Tensor head;   // [vocab or num_labels, hidden]
};

// Inputs and outputs of the final norm and head for `rows` rows.
struct HeadBuffers {
  bool last_only;  // gather each sequence's last token first
  Tensor last;     // [rows, hidden] when last_only
  Tensor normed;   // [rows, hidden]
  Tensor logits;   // [rows, vocab or num_labels], f32

  HeadBuffers(Backend& b, const ModelConfig& c, const Tensor& head, int64_t rows, bool last_only);
};

// Where one sequence's new tokens sit in the flattened batch.
struct Span {
  int64_t begin, count, past;
  KVCache* cache;
};

}  // namespace wick
