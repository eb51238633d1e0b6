// Qwen2 weights: the tensors a config implies, checked against the files, loaded onto a backend.
#pragma once

#include <string>
#include <vector>

#include "model/linear.h"
#include "model/tensor_parallel.h"
#include "wick/config.h"
#include "wick/safetensors.h"

namespace wick {

struct LayerWeights {
  Tensor input_norm;                  // [hidden]
  Projection q, k, v, o;              // q [heads·d, hidden] + bias; k, v [kv_heads·d, hidden] + bias; o [hidden, heads·d]
  Tensor post_attention_norm;         // [hidden]
  Projection gate, up, down;          // gate, up [ffn, hidden]; down [hidden, ffn]

  /// The projection of `kind`.
  Projection& projection(ProjKind kind) {
    Projection* all[kProjKinds] = {&q, &k, &v, &o, &gate, &up, &down};
    return *all[int(kind)];
  }
  const Projection& projection(ProjKind kind) const { return const_cast<LayerWeights*>(this)->projection(kind); }
};

struct ModelWeights {
  Tensor embed;       // [vocab, hidden]
  std::vector<LayerWeights> layers;
  Tensor final_norm;  // [hidden]
  Tensor head;        // lm_head [vocab, hidden] (the embedding itself when tied) or score [num_labels, hidden];
                      // undefined for ModelHead::none
};

/// One tensor a config implies: its Hugging Face name and shape.
struct TensorSpec {
  std::string name;
  Shape shape;
};

/// Shape [out, in] of a projection's weight.
Shape proj_shape(const ModelConfig& config, ProjKind kind);

/// Every tensor a model with this config stores, in a stable order (a tied lm_head is not stored), as the task models
/// name them ("model.embed_tokens.weight"; load_weights also takes a headless model's "embed_tokens.weight").
std::vector<TensorSpec> expected_tensors(const ModelConfig& config);

/// Checks every expected tensor's presence, shape and dtype in `store` and reports all problems in
/// one error naming `source`; then uploads them to `backend` in its compute dtype. With shard.ranks > 1, only that
/// rank's share of each tensor (tensor_parallel.h) is uploaded: the layers' projections as shard_config(config)
/// shapes them, the embedding and a causal LM's head as their vocabulary slice (padded).
ModelWeights load_weights(const ModelConfig& config, const TensorStore& store, Backend& backend,
                          const std::string& source, Shard shard = {});

}  // namespace wick
