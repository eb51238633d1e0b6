#include "model/linear.h"

#include <cstring>

namespace wick {

const LoraSource::FusedTable& LoraSource::fused_table(int64_t layers) const {
  std::call_once(fused_once_, [&] {
    fused_.usable = !head() && !embedding();
    fused_.entries.assign(size_t(layers * kProjKinds), LoraEntry{});
    for (int l = 0; l < int(layers); ++l)
      for (int k = 0; k < kProjKinds; ++k) {
        const LoraFactors* f = factors(l, ProjKind(k));
        if (!f) continue;
        if (f->a.dim(0) > kFusedLoraMaxRank || f->a.device() == Device::cpu || f->a.dtype() != DType::bf16 ||
            f->b.dtype() != DType::bf16)
          fused_.usable = false;
        fused_.entries[size_t(l * kProjKinds + k)] = {.a = f->a.raw(), .b = f->b.raw(), .scale = f->scale,
                                                      .rank = int32_t(f->a.dim(0))};
      }
  });
  return fused_;
}

const Tensor& LoraSource::fused_device_table(int64_t layers, Backend& backend) const {
  std::call_once(device_once_, [&] {
    const std::vector<LoraEntry>& entries = fused_table(layers).entries;
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

}  // namespace wick
