// AdapterRegistry: resident adapters by name; activation is the model's pointer exchange.
#include <utility>

#include "adapter/lora.h"
#include "wick/adapter.h"
#include "wick/error.h"
#include "wick/model.h"

namespace wick {

AdapterRegistry::AdapterRegistry(std::shared_ptr<Model> model) : model_(std::move(model)) {
  if (!model_) fail(ErrorKind::bad_input, "AdapterRegistry: no model");
}

std::shared_ptr<const LoraAdapter> AdapterRegistry::load(const std::filesystem::path& dir, std::string name) {
  if (!name.empty() && get(name)) fail(ErrorKind::bad_input, "adapter '" + name + "' is already loaded");
  // Disk and upload work happen outside the lock, so swaps and lookups never wait on a load.
  auto adapter = LoraAdapter::load(dir, *model_, std::move(name));
  add(adapter);
  return adapter;
}

void AdapterRegistry::add(std::shared_ptr<const LoraAdapter> adapter) {
  if (!adapter) fail(ErrorKind::bad_input, "AdapterRegistry::add: no adapter");
  const std::string& name = adapter->info().name;
  if (name.empty()) fail(ErrorKind::bad_input, "AdapterRegistry::add: the adapter has no name");
  adapter->check_fits(*model_);
  const std::lock_guard lock(mutex_);
  if (!adapters_.emplace(name, std::move(adapter)).second)
    fail(ErrorKind::bad_input, "adapter '" + name + "' is already loaded");
}

std::shared_ptr<const LoraAdapter> AdapterRegistry::put(std::shared_ptr<const LoraAdapter> adapter) {
  if (!adapter) fail(ErrorKind::bad_input, "AdapterRegistry::put: no adapter");
  const std::string& name = adapter->info().name;
  if (name.empty()) fail(ErrorKind::bad_input, "AdapterRegistry::put: the adapter has no name");
  adapter->check_fits(*model_);
  std::shared_ptr<const LoraAdapter> old;  // released after the lock
  const std::lock_guard lock(mutex_);
  std::shared_ptr<const LoraAdapter>& slot = adapters_[name];
  old = std::exchange(slot, adapter);
  if (old && model_->current_adapter() == old) model_->apply_adapter(adapter);
  return old;
}

bool AdapterRegistry::unload(const std::string& name) {
  std::shared_ptr<const LoraAdapter> dropped;  // released after the lock, with whatever it frees
  {
    const std::lock_guard lock(mutex_);
    auto it = adapters_.find(name);
    if (it == adapters_.end()) return false;
    if (model_->current_adapter() == it->second) model_->remove_adapter();
    dropped = std::move(it->second);
    adapters_.erase(it);
  }
  return true;
}

void AdapterRegistry::activate(const std::string& name) {
  const std::lock_guard lock(mutex_);
  auto it = adapters_.find(name);
  if (it == adapters_.end()) fail(ErrorKind::not_found, "no adapter '" + name + "' is loaded");
  model_->apply_adapter(it->second);
}

void AdapterRegistry::deactivate() {
  const std::lock_guard lock(mutex_);
  model_->remove_adapter();
}

std::string AdapterRegistry::active() const {
  const auto current = model_->current_adapter();
  return current ? current->info().name : std::string();
}

std::vector<AdapterInfo> AdapterRegistry::list() const {
  const std::lock_guard lock(mutex_);
  std::vector<AdapterInfo> out;
  out.reserve(adapters_.size());
  for (const auto& [name, adapter] : adapters_) out.push_back(adapter->info());
  return out;
}

std::shared_ptr<const LoraAdapter> AdapterRegistry::get(const std::string& name) const {
  const std::lock_guard lock(mutex_);
  auto it = adapters_.find(name);
  return it == adapters_.end() ? nullptr : it->second;
}

}  // namespace wick
