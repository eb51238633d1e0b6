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

/// loss = Σ over rows with target ≠ −100 of −log softmax(x·Wᵀ)[target] (W = head), and, when dx is given, its
/// gradient times p.scale: dx = p.scale · (softmax − onehot(target))·W, 0 on ignored rows (written). The head is
/// frozen. x [rows, hidden] (the final norm's output); head [vocab, hidden]; targets i32 [rows] on the backend,
/// already shifted (row t's target is token t + 1), −100 where no loss is taken. Sums in double.
double head_cross_entropy(Backend& backend, const Tensor& x, const Tensor& head, const Tensor& targets, Tensor* dx,
                          const HeadLossParams& p = {});

}  // namespace wick
