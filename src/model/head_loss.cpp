#include "model/head_loss.h"

#include <algorithm>
#include <string>

#include "wick/error.h"

namespace wick {

double head_cross_entropy(Backend& backend, const Tensor& x, const Tensor& head, const Tensor& targets,
                          const HeadLossGrads& grads, const HeadLossParams& p) {
  Tensor* dx = grads.dx;
  const int64_t rows = x.dim(0), vocab = head.dim(0);
  if (p.chunk_rows < 1) fail(ErrorKind::internal, "head_cross_entropy: chunk_rows " + std::to_string(p.chunk_rows));
  if (targets.numel() != rows || (dx && dx->shape() != x.shape()))
    fail(ErrorKind::internal, "head_cross_entropy: x " + to_string(x.shape()) + ", targets " +
                                  to_string(targets.shape()) + (dx ? ", dx " + to_string(dx->shape()) : ""));
  const int64_t chunk = std::min(p.chunk_rows, rows);
  if (grads.d_head && grads.d_head->shape() != head.shape())
    fail(ErrorKind::internal, "head_cross_entropy: d_head " + to_string(grads.d_head->shape()) + " for head " +
                                  to_string(head.shape()));
  // Logits in f32; their gradient in the compute dtype, the product's other operands' (the head, x).
  Tensor logits = backend.alloc({chunk, vocab}, DType::f32);
  Tensor d_logits = backend.alloc({chunk, vocab}, backend.compute_dtype());
  double loss = 0;
  for (int64_t begin = 0; begin < rows; begin += chunk) {
    const int64_t end = std::min(begin + chunk, rows), n = end - begin;
    Tensor l = logits.rows(0, n), dl = d_logits.rows(0, n);
    backend.linear(x.rows(begin, end), head, Tensor(), l);
    loss += backend.cross_entropy(l, targets.rows(begin, end), p.scale, dl);
    if (dx) {
      Tensor d = dx->rows(begin, end);
      backend.matmul(dl, head, d);  // d_logits·W
    }
    if (grads.d_head) backend.matmul(dl, x.rows(begin, end), *grads.d_head, {.transpose_a = true, .beta = 1.0f});
  }
  return loss;
}

}  // namespace wick
