// What the train layer (src/train) reads of a model: its backend, to hold the trained tensors and their
// gradients, and the training pass over a micro-batch (train_ops.h), run under the model's locks.
#pragma once

#include <cstdint>
#include <span>

#include "backend/backend.h"
#include "model/train_ops.h"
#include "wick/model.h"

namespace wick {

/// One training sequence, as a transformers model takes input_ids and labels. A causal LM: labels[i] is token
/// i's label, not shifted (position i is scored on labels[i + 1]; −100 takes no loss). A sequence classifier: one
/// label, the class, scored at the last token.
struct TrainSequence {
  std::span<const int32_t> ids;
  std::span<const int32_t> labels;
};

struct ModelTraining {
  /// The backend the model's weights live on.
  static Backend& backend(const Model& model);
  /// Forward and backward of `batch` with `lora` in effect (the factors being trained; it may replace the head),
  /// accumulating into `grads` the gradients of options.loss_scale · Σ loss. Returns Σ loss (unscaled) over the
  /// batch's scored tokens (a classifier: its sequences). Validates the whole batch first (ids in the vocabulary,
  /// lengths within max_position_embeddings, a causal LM's labels ids or −100 and a classifier's one class in
  /// [0, num_labels)), throwing bad_input naming the sequence; bad_input too when an adapter is merged into the
  /// weights (gradients would be of the merged model).
  static double train_pass(const Model& model, std::span<const TrainSequence> batch, const LoraSource& lora,
                           LoraGradients& grads, const TrainOpsOptions& options);
  /// Σ loss of `batch` with `lora`, forward only (an eval set), checked as train_pass checks.
  static double loss(const Model& model, std::span<const TrainSequence> batch, const LoraSource& lora,
                     int64_t loss_chunk_rows = 1024);
  /// A CPU f32 copy of the output head (lm_head, the tied embedding, or score): what PEFT copies into a trained
  /// head before its first step.
  static Tensor head_weight(const Model& model);
};

}  // namespace wick
