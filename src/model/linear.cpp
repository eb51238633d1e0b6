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

const LoraSource::Shards& LoraSource::rank_shards(int ranks, const std::function<Shards()>& make) const {
  const std::lock_guard lock(shards_mu_);
  if (int(shards_.size()) != ranks) shards_ = make();
  return shards_;
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

namespace {

// The LoRA path's input: x, or dropout(x) in new storage.
Tensor lora_input(Backend& backend, const Tensor& x, const LoraDropout& dropout) {
  if (dropout.p <= 0.0f) return x;
  Tensor dropped = backend.alloc(x.shape(), x.dtype());
  backend.dropout(x, dropout.p, dropout.seed, dropped);
  return dropped;
}

}  // namespace

void linear(Backend& backend, const Tensor& x, const Projection& proj, const LoraSource* lora, Tensor& out,
            const LoraDropout& dropout) {
  backend.linear(x, proj.weight, proj.bias, out);
  const LoraFactors* f = lora ? lora->factors(proj.layer, proj.kind) : nullptr;
  if (!f) return;
  Tensor low = backend.alloc({x.dim(0), f->a.dim(0)}, backend.compute_dtype());  // [rows, rank]
  backend.linear(lora_input(backend, x, dropout), f->a, Tensor(), low);
  backend.linear(low, f->b, Tensor(), out, {.alpha = f->scale, .beta = 1.0f});
}

void linear_segments(Backend& backend, const Tensor& x, const Projection& proj, std::span<const LoraSegment> segments,
                     Tensor& out) {
  backend.linear(x, proj.weight, proj.bias, out);
  for (const LoraSegment& seg : segments) {
    const LoraFactors* f = seg.lora ? seg.lora->factors(proj.layer, proj.kind) : nullptr;
    if (!f) continue;
    Tensor low = backend.alloc({seg.count, f->a.dim(0)}, backend.compute_dtype());  // [rows, rank]
    backend.linear(x.rows(seg.begin, seg.begin + seg.count), f->a, Tensor(), low);
    Tensor rows = out.rows(seg.begin, seg.begin + seg.count);
    backend.linear(low, f->b, Tensor(), rows, {.alpha = f->scale, .beta = 1.0f});
  }
}

void linear_rows(Backend& backend, const Tensor& x, const Projection& proj, const Tensor& row_tables, int32_t max_rank,
                 Tensor& out) {
  backend.linear(x, proj.weight, proj.bias, out);
  backend.lora_rows(x, row_tables, lora_slot(proj.layer, proj.kind), max_rank, out);
}

void linear_backward(Backend& backend, const Tensor& x, const Projection& proj, const LoraSource* lora,
                     const Tensor& d_out, Tensor* dx, LoraGrads* grads, const LinearBackwardOptions& o) {
  if (dx) backend.matmul(d_out, proj.weight, *dx, {.beta = o.accumulate_dx ? 1.0f : 0.0f});  // d_out·W
  const LoraFactors* f = lora ? lora->factors(proj.layer, proj.kind) : nullptr;
  if (!f) return;
  const int64_t rows = x.dim(0), rank = f->a.dim(0);
  const DType dt = backend.compute_dtype();
  Tensor d_low = backend.alloc({rows, rank}, dt);  // d_out·B: the gradient of the low-rank t = x'·Aᵀ, before scale
  backend.matmul(d_out, f->b, d_low);
  if (dx && o.dropout.p <= 0.0f) backend.matmul(d_low, f->a, *dx, {.alpha = f->scale, .beta = 1.0f});
  if (dx && o.dropout.p > 0.0f) {  // through the mask: the same draw as the forward's
    Tensor through = backend.alloc(dx->shape(), dx->dtype());
    backend.matmul(d_low, f->a, through, {.alpha = f->scale});
    backend.dropout(through, o.dropout.p, o.dropout.seed, through);
    backend.add(*dx, through, *dx);
  }
  if (!grads) return;
  const Tensor in = lora_input(backend, x, o.dropout);
  Tensor low = backend.alloc({rows, rank}, dt);  // t = x'·Aᵀ, recomputed
  backend.linear(in, f->a, Tensor(), low);
  backend.matmul(d_out, low, grads->b, {.transpose_a = true, .alpha = f->scale, .beta = 1.0f});
  backend.matmul(d_low, in, grads->a, {.transpose_a = true, .alpha = f->scale, .beta = 1.0f});
}

}  // namespace wick
