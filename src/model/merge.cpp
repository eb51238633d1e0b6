// Model::merge_lora / unmerge_lora: an adapter folded into the weights (W + scale·B·A in new tensors) and the base
// tensors put back bit-exactly (kept, never recomputed by subtraction); on a split model, each rank's share.
#include <iterator>
#include <utility>
#include <vector>

#include "model/split_model.h"
#include "wick/error.h"

namespace wick {

namespace {

// [rows, cols] -> [cols, rows], CPU f32.
Tensor transpose(const Tensor& t) {
  const int64_t rows = t.dim(0), cols = t.dim(1);
  Tensor out = Tensor::empty({cols, rows}, DType::f32);
  const float* src = t.data<float>();
  float* dst = out.data<float>();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) dst[c * rows + r] = src[r * cols + c];
  return out;
}

// W + scale·B·A on the backend, in a new tensor of W's dtype. A weight the CPU keeps in bf16 is merged in f32 and
// rounded once; one it keeps in q8_0 is merged in f32 on its dequantised values (exact) and quantised again.
Tensor merged_weight(Backend& b, const Tensor& w, const LoraFactors& f) {
  const DType dt = b.compute_dtype();
  const Tensor a_t = b.upload(transpose(b.download(f.a)), dt);  // [in, rank]; the factor's values exactly
  Tensor merged;
  if (w.dtype() == dt) {
    merged = b.alloc(w.shape(), dt);
    b.copy_rows(w, merged, 0);
  } else {
    merged = b.upload(b.download(w), dt);
  }
  b.linear(f.b, a_t, Tensor(), merged, {.alpha = f.scale, .beta = 1.0f});
  return w.dtype() == dt ? merged : b.upload_weight(b.download(merged).to(w.dtype()));
}

// The slots of `w` that merging `lora` replaces, each with its merged tensor (made on `b`; none changed yet).
std::vector<std::pair<Tensor*, Tensor>> merged_slots(Backend& b, ModelWeights& w, const LoraSource& lora) {
  std::vector<std::pair<Tensor*, Tensor>> out;
  for (int64_t l = 0; l < int64_t(w.layers.size()); ++l)
    for (int k = 0; k < kProjKinds; ++k)
      if (const LoraFactors* f = lora.factors(int(l), ProjKind(k))) {
        Projection& p = w.layers[size_t(l)].projection(ProjKind(k));
        out.emplace_back(&p.weight, merged_weight(b, p.weight, *f));
      }
  if (lora.head()) out.emplace_back(&w.head, *lora.head());
  if (lora.embedding()) out.emplace_back(&w.embed, *lora.embedding());
  return out;
}

// Recorded steps read the weight tensors they were recorded with: forgotten after any slot changes.
void forget_recorded(Model::Impl& impl) {
  if (impl.decode_steps) impl.decode_steps->forget_graphs();
  if (impl.paged_steps) impl.paged_steps->forget_graphs();
  if (TensorParallel* tp = impl.tp.get()) {
    for (auto& steps : tp->decode_steps) steps->forget_graphs();
    for (auto& steps : tp->paged_steps) steps->forget_graphs();
    impl.weights = tp->weights[0];  // rank 0's share, as loading left it
  }
}

}  // namespace

void Model::merge_lora(std::shared_ptr<const LoraSource> lora) {
  if (!lora) fail(ErrorKind::bad_input, "merge: no adapter");
  const std::unique_lock lock(impl_->weights_mutex);
  if (impl_->merged) fail(ErrorKind::bad_input, "merge: an adapter is already merged (unmerge it first)");

  // Every merged tensor is made before any slot changes, so a failure leaves the weights as they were. A split model
  // merges each rank's share of the adapter into its share of the weights (the adapter split as the base: W's rows
  // get B's rows, W's columns A's), each on its rank's thread.
  std::vector<std::pair<Tensor*, Tensor>> replacements;
  if (TensorParallel* tp = impl_->tp.get()) {
    std::vector<const LoraSource*> shares(size_t(tp->ranks()));
    for (int r = 0; r < tp->ranks(); ++r) shares[size_t(r)] = rank_lora(*impl_, lora.get(), r);
    std::vector<std::vector<std::pair<Tensor*, Tensor>>> per_rank(shares.size());
    tp->threads->run([&](int r) {
      tp->backends[size_t(r)]->bind_thread();
      per_rank[size_t(r)] = merged_slots(*tp->backends[size_t(r)], tp->weights[size_t(r)], *shares[size_t(r)]);
    });
    for (auto& slots : per_rank) std::move(slots.begin(), slots.end(), std::back_inserter(replacements));
  } else {
    replacements = merged_slots(*impl_->backend, impl_->weights, *lora);
  }
  for (auto& [slot, tensor] : replacements) {
    impl_->unmerged.emplace_back(slot, *slot);
    *slot = std::move(tensor);
  }
  forget_recorded(*impl_);
  impl_->merged = std::move(lora);
}

std::shared_ptr<const LoraSource> Model::unmerge_lora() {
  const std::unique_lock lock(impl_->weights_mutex);
  for (auto it = impl_->unmerged.rbegin(); it != impl_->unmerged.rend(); ++it) *it->first = std::move(it->second);
  impl_->unmerged.clear();
  forget_recorded(*impl_);
  return std::exchange(impl_->merged, nullptr);
}

std::shared_ptr<const LoraSource> Model::merged_lora() const {
  const std::shared_lock lock(impl_->weights_mutex);
  return impl_->merged;
}

}  // namespace wick
