#include "train/trainable.h"

#include <cmath>
#include <random>
#include <utility>

#include "wick/error.h"

namespace wick {

TrainableAdapter::TrainableAdapter(std::shared_ptr<Model> model, LoraConfig config,
                                   const std::map<std::string, Tensor>& tensors, const std::string& source)
    : model_(std::move(model)), config_(std::move(config)) {
  const ModelConfig& c = model_->config();
  plan_ = plan_adapter(config_, c, source);
  for (const SavedModulePlan& s : plan_.saved)
    if (s.slot == SavedModulePlan::Slot::embedding)
      fail(ErrorKind::unsupported, source + ": training a whole embedding (modules_to_save " + s.name +
                                       ") is not supported; train LoRA factors, score or lm_head");
  LoraAdapter::from_tensors("checked", config_, tensors, *model_);  // every tensor checked against the model
  Backend& b = ModelTraining::backend(*model_);
  shared_ = b.device() == Device::cpu && b.compute_dtype() == DType::f32;
  auto add = [&](const std::string& key, Tensor& device_value, Tensor& device_grad) {
    Param p{.name = key, .value = tensors.at(key).to(DType::f32), .grad = {}};
    p.grad = Tensor::zeros(p.value.shape(), DType::f32);
    device_value = shared_ ? p.value : model_->upload(p.value);
    device_grad = shared_ ? p.grad : b.alloc(p.value.shape(), DType::f32);
    params_.push_back(std::move(p));
  };
  slots_.resize(size_t(c.num_layers * kProjKinds));
  grads_.slots.resize(slots_.size());
  params_.reserve(plan_.lora.size() * 2 + plan_.saved.size());
  for (const LoraModulePlan& m : plan_.lora) {
    const size_t slot = size_t(lora_slot(m.layer, m.kind));
    slots_[slot].scale = m.scale;
    add(lora_a_key(m), slots_[slot].a, grads_.slots[slot].a);
    add(lora_b_key(m), slots_[slot].b, grads_.slots[slot].b);
  }
  for (const SavedModulePlan& s : plan_.saved) add(saved_key(s), head_, grads_.head);
  // The pointers are taken once params_ no longer moves.
  for (const LoraModulePlan& m : plan_.lora) {
    const size_t slot = size_t(lora_slot(m.layer, m.kind));
    device_values_.insert(device_values_.end(), {&slots_[slot].a, &slots_[slot].b});
    device_grads_.insert(device_grads_.end(), {&grads_.slots[slot].a, &grads_.slots[slot].b});
  }
  for (size_t i = 0; i < plan_.saved.size(); ++i) {
    device_values_.push_back(&head_);
    device_grads_.push_back(&grads_.head);
  }
  zero_grad();
}

const LoraFactors* TrainableAdapter::factors(int layer, ProjKind kind) const {
  const LoraFactors& f = slots_.at(size_t(lora_slot(layer, kind)));
  return f.a.defined() ? &f : nullptr;
}

void TrainableAdapter::zero_grad() {
  Backend& b = ModelTraining::backend(*model_);
  for (Tensor* g : device_grads_) b.zero(*g);
}

void TrainableAdapter::gather_grads() {
  if (shared_) return;
  Backend& b = ModelTraining::backend(*model_);
  for (size_t i = 0; i < params_.size(); ++i) params_[i].grad = b.download(*device_grads_[i]);
}

void TrainableAdapter::refresh() {
  if (shared_) return;
  for (size_t i = 0; i < params_.size(); ++i) *device_values_[i] = model_->upload(params_[i].value);
}

std::map<std::string, Tensor> TrainableAdapter::tensors() const {
  std::map<std::string, Tensor> out;
  for (const Param& p : params_) out[p.name] = p.value.clone();
  return out;
}

std::map<std::string, Tensor> init_adapter_tensors(const AdapterPlan& plan, const Tensor& head_weight, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::map<std::string, Tensor> out;
  for (const LoraModulePlan& m : plan.lora) {
    Tensor a = Tensor::empty(m.a_shape, DType::f32);
    const double bound = 1.0 / std::sqrt(double(m.a_shape[1]));
    // 53 random bits → [0, 1): the same double on every platform (uniform_real_distribution is not).
    for (int64_t i = 0; i < a.numel(); ++i)
      a.data<float>()[i] = float((2.0 * double(rng() >> 11) * 0x1.0p-53 - 1.0) * bound);
    out[lora_a_key(m)] = a;
    out[lora_b_key(m)] = Tensor::zeros(m.b_shape, DType::f32);
  }
  for (const SavedModulePlan& s : plan.saved) out[saved_key(s)] = head_weight.to(DType::f32);
  return out;
}

}  // namespace wick
