#include "model/linear.h"

namespace wick {

void linear(Backend& backend, const Tensor& x, const Projection& proj, const LoraSource* lora, Tensor& out) {
  backend.linear(x, proj.weight, proj.bias, out);
  const LoraFactors* f = lora ? lora->factors(proj.layer, proj.kind) : nullptr;
  if (!f) return;
  Tensor low = backend.alloc({x.dim(0), f->a.dim(0)}, backend.compute_dtype());  // [rows, rank]
  backend.linear(x, f->a, Tensor(), low);
  backend.linear(low, f->b, Tensor(), out, {.alpha = f->scale, .beta = 1.0f});
}

}  // namespace wick
