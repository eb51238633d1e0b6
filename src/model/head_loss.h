// The causal LM's loss: cross-entropy of the head's logits, computed a chunk of rows at a time so that the
// [tokens, vocab] logits never exist whole (4,096 tokens × 151,936 ids would be 2.5 GB in f32).
#pragma once

#include <cstdint>

#include "backend/backend.h"

namespace wick {

struct HeadLossParams {
  int64_t chunk_rows = 1024;  // rows whose logits exist at once: chunk_rows × vocab f32
  float scale = 1.0f;         // dx is the gradient of scale · loss (1 / the target tokens of an optimizer step)
};

/// The gradients head_cross_entropy gives, each optional.
struct HeadLossGrads {
  Tensor* dx = nullptr;      // [rows, hidden], written
  Tensor* d_head = nullptr;  // [vocab, hidden] f32, accumulated: a trained head (PEFT modules_to_save)
};

/// loss = Σ over rows with target ≠ −100 of −log softmax(x·Wᵀ)[target] (W = head), and the gradients of
/// p.scale · loss asked for: with G = p.scale · (softmax − onehot(target)) (0 on ignored rows), dx = G·W and
/// d_head += Gᵀ·x. x [rows, hidden] (the final norm's output); head [vocab, hidden]; targets i32 [rows] on the
/// backend: for a causal LM already shifted (row t's target is token t + 1), for a classifier the class; −100
/// where no loss is taken. Sums in double.
double head_cross_entropy(Backend& backend, const Tensor& x, const Tensor& head, const Tensor& targets,
                          const HeadLossGrads& grads = {}, const HeadLossParams& p = {});

}  // namespace wick
