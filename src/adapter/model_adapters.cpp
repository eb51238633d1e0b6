// Model's adapter API: apply / remove (the hot-swap pointer) and merge / unmerge (weights replaced, base
// tensors kept). Defined here, beside the adapter code, because model/ must not depend on adapter/.
#include <utility>

#include "adapter/lora.h"
#include "model/model_impl.h"
#include "wick/error.h"

namespace wick {

namespace {

// The adapter behind a LoraSource the model holds, sharing its ownership; nullptr for other sources.
std::shared_ptr<const LoraAdapter> owner_of(std::shared_ptr<const LoraSource> source) {
  const auto* impl = dynamic_cast<const LoraAdapter::Impl*>(source.get());
  return impl ? std::shared_ptr<const LoraAdapter>(std::move(source), impl->owner) : nullptr;
}

// The adapter as the LoraSource the forward pass reads, keeping the adapter alive.
std::shared_ptr<const LoraSource> as_source(std::shared_ptr<const LoraAdapter> adapter) {
  const LoraSource* source = &adapter->source();
  return std::shared_ptr<const LoraSource>(std::move(adapter), source);
}

Projection& projection(LayerWeights& l, ProjKind kind) {
  Projection* slots[kProjKinds] = {&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down};
  return *slots[int(kind)];
}

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

std::string describe(const ModelConfig& c, Device d) {
  return std::to_string(c.num_layers) + " layers, hidden " + std::to_string(c.hidden_size) + ", ffn " +
         std::to_string(c.intermediate_size) + ", vocab " + std::to_string(c.vocab_size) + ", on " +
         (d == Device::cpu ? "cpu" : "cuda");
}

}  // namespace

void check_fits(const LoraAdapter& adapter, const Model& model) {
  const LoraAdapter::Impl& a = adapter.internals();
  if (same_shape(a.base, model.config()) && a.device == model.device()) return;
  fail(ErrorKind::bad_input, "adapter '" + a.info.name + "' was made for a model of " + describe(a.base, a.device) +
                                 ", not this one (" + describe(model.config(), model.device()) + ")");
}

void Model::apply_adapter(std::shared_ptr<const LoraAdapter> adapter) {
  if (!adapter) fail(ErrorKind::bad_input, "apply_adapter: no adapter (remove_adapter() returns to the base model)");
  check_fits(*adapter, *this);
  set_active_lora(as_source(std::move(adapter)));
}

std::shared_ptr<const LoraAdapter> Model::remove_adapter() { return owner_of(impl_->active_lora.exchange(nullptr)); }

bool Model::has_adapter() const { return impl_->active_lora.load() != nullptr; }

std::shared_ptr<const LoraAdapter> Model::current_adapter() const { return owner_of(active_lora()); }

void Model::merge_adapter(std::shared_ptr<const LoraAdapter> adapter) {
  if (!adapter) fail(ErrorKind::bad_input, "merge_adapter: no adapter");
  check_fits(*adapter, *this);
  const LoraAdapter::Impl& a = adapter->internals();
  Backend& b = *impl_->backend;
  const DType dt = b.compute_dtype();
  const std::unique_lock lock(impl_->weights_mutex);
  if (impl_->merged)
    fail(ErrorKind::bad_input, "merge_adapter: adapter '" + owner_of(impl_->merged)->info().name +
                                   "' is already merged (unmerge_adapter() first)");

  // Every merged tensor is made before any slot changes, so a failure leaves the weights as they were.
  std::vector<std::pair<Tensor*, Tensor>> replacements;
  for (const LoraModulePlan& m : a.plan.lora) {
    Projection& p = projection(impl_->weights.layers[size_t(m.layer)], m.kind);
    const LoraFactors& f = *a.factors(m.layer, m.kind);
    const Tensor a_t = b.upload(transpose(a.host.at(lora_a_key(m))), dt);  // [in, rank]
    Tensor merged = b.alloc(p.weight.shape(), dt);
    b.copy_rows(p.weight, merged, 0);
    b.linear(f.b, a_t, Tensor(), merged, {.alpha = f.scale, .beta = 1.0f});  // W + scale · B·A
    replacements.emplace_back(&p.weight, std::move(merged));
  }
  for (const SavedModulePlan& s : a.plan.saved) {
    const bool head = s.slot == SavedModulePlan::Slot::head;
    replacements.emplace_back(head ? &impl_->weights.head : &impl_->weights.embed,
                              head ? a.head_override : a.embed_override);
  }
  for (auto& [slot, tensor] : replacements) {
    impl_->unmerged.emplace_back(slot, *slot);
    *slot = std::move(tensor);
  }
  impl_->invalidate_graphs();  // recorded decode steps read the old weight tensors
  impl_->merged = as_source(std::move(adapter));
}

std::shared_ptr<const LoraAdapter> Model::unmerge_adapter() {
  const std::unique_lock lock(impl_->weights_mutex);
  for (auto it = impl_->unmerged.rbegin(); it != impl_->unmerged.rend(); ++it) *it->first = std::move(it->second);
  impl_->unmerged.clear();
  impl_->invalidate_graphs();
  return owner_of(std::exchange(impl_->merged, nullptr));
}

std::shared_ptr<const LoraAdapter> Model::merged_adapter() const {
  const std::shared_lock lock(impl_->weights_mutex);
  return owner_of(impl_->merged);
}

}  // namespace wick
