#include "model/linear.h"

#include <algorithm>
#include <cstring>

namespace wick {

const LoraSource::Table& LoraSource::table(int64_t layers) const {
  std::call_once(table_once_, [&] {
    table_.entries.assign(size_t(layers * kProjKinds), LoraEntry{});
    bool first = true;
    for (int l = 0; l < int(layers); ++l)
      for (int k = 0; k < kProjKinds; ++k) {
        const LoraFactors* f = factors(l, ProjKind(k));
        if (!f) continue;
        const int32_t rank = int32_t(f->a.dim(0));
        table_.max_rank = std::max(table_.max_rank, rank);
        if (first) table_.device = f->a.device(), table_.dtype = f->a.dtype(), first = false;
        for (const Tensor* t : {&f->a, &f->b})
          table_.uniform &= t->device() == table_.device && t->dtype() == table_.dtype;
        table_.entries[size_t(lora_slot(l, ProjKind(k)))] = {.a = f->a.raw(), .b = f->b.raw(), .scale = f->scale,
                                                            .rank = rank};
      }
  });
  return table_;
}

const Tensor& LoraSource::device_table(int64_t layers, Backend& backend) const {
  std::call_once(device_once_, [&] {
    const std::vector<LoraEntry>& entries = table(layers).entries;
    Tensor host = Tensor::empty({int64_t(entries.size() * sizeof(LoraEntry) / sizeof(int32_t))}, DType::i32);
    std::memcpy(host.raw(), entries.data(), entries.size() * sizeof(LoraEntry));
    device_table_ = backend.upload(host, DType::i32);
  });
  return device_table_;
}

void linear(Backend& backend, const Tensor& x, const Projection& proj, const LoraSource* lora, Tensor& out) {
  backend.linear(x, proj.weight, proj.bias, out);
  const LoraFactors* f = lora ? lora->factors(proj.layer, proj.kind) : nullptr;
  if (!f) return;
  Tensor low = backend.alloc({x.dim(0), f->a.dim(0)}, backend.compute_dtype());  // [rows, rank]
  backend.linear(x, f->a, Tensor(), low);
  backend.linear(low, f->b, Tensor(), out, {.alpha = f->scale, .beta = 1.0f});
}

void linear_backward(Backend& backend, const Tensor& x, const Projection& proj, const LoraSource* lora,
                     const Tensor& d_out, Tensor* dx, LoraGrads* grads, bool accumulate_dx) {
  if (dx) backend.matmul(d_out, proj.weight, *dx, {.beta = accumulate_dx ? 1.0f : 0.0f});  // d_out·W
  const LoraFactors* f = lora ? lora->factors(proj.layer, proj.kind) : nullptr;
  if (!f) return;
  const int64_t rows = x.dim(0), rank = f->a.dim(0);
  const DType dt = backend.compute_dtype();
  Tensor d_low = backend.alloc({rows, rank}, dt);  // d_out·B: the gradient of the low-rank t = x·Aᵀ, before scale
  backend.matmul(d_out, f->b, d_low);
  if (dx) backend.matmul(d_low, f->a, *dx, {.alpha = f->scale, .beta = 1.0f});
  if (!grads) return;
  Tensor low = backend.alloc({rows, rank}, dt);  // t = x·Aᵀ, recomputed
  backend.linear(x, f->a, Tensor(), low);
  backend.matmul(d_out, low, grads->b, {.transpose_a = true, .alpha = f->scale, .beta = 1.0f});
  backend.matmul(d_low, x, grads->a, {.transpose_a = true, .alpha = f->scale, .beta = 1.0f});
}

}  // namespace wick
