// Model's adapter API: apply / remove (the hot-swap pointer) and merge / unmerge, checked for a LoraAdapter and
// carried out by the model's LoraSource API (set_active_lora, merge_lora). Defined here, beside the adapter code,
// because model/ must not depend on adapter/.
#include <utility>

#include "adapter/lora.h"
#include "wick/error.h"
#include "wick/model.h"

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

}  // namespace

void Model::apply_adapter(std::shared_ptr<const LoraAdapter> adapter) {
  if (!adapter) fail(ErrorKind::bad_input, "apply_adapter: no adapter (remove_adapter() returns to the base model)");
  adapter->check_fits(*this);
  set_active_lora(as_source(std::move(adapter)));
}

std::shared_ptr<const LoraAdapter> Model::remove_adapter() { return owner_of(set_active_lora(nullptr)); }

bool Model::has_adapter() const { return active_lora() != nullptr; }

std::shared_ptr<const LoraAdapter> Model::current_adapter() const { return owner_of(active_lora()); }

void Model::merge_adapter(std::shared_ptr<const LoraAdapter> adapter) {
  if (!adapter) fail(ErrorKind::bad_input, "merge_adapter: no adapter");
  adapter->check_fits(*this);
  if (const auto merged = merged_adapter())
    fail(ErrorKind::bad_input,
         "merge_adapter: adapter '" + merged->info().name + "' is already merged (unmerge_adapter() first)");
  merge_lora(as_source(std::move(adapter)));
}

std::shared_ptr<const LoraAdapter> Model::unmerge_adapter() { return owner_of(unmerge_lora()); }

std::shared_ptr<const LoraAdapter> Model::merged_adapter() const { return owner_of(merged_lora()); }

}  // namespace wick
