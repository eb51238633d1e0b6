// The adapter a Trainer trains: f32 master tensors on the host under their PEFT keys (what AdamW updates and a
// checkpoint saves), their gradients, and the LoraSource the training pass reads on the model's backend (on the
// CPU the same tensors; on a GPU copies in the compute dtype, refreshed after each optimizer step).
#pragma once

#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "adapter/lora.h"
#include "model/training.h"
#include "train/optimizer.h"

namespace wick {

class TrainableAdapter final : public LoraSource {
 public:
  /// From a PEFT config and its tensors by key (CPU; any float dtype), checked against `model` as an adapter
  /// directory is (every missing, unexpected or misshaped tensor named). `source` names them in errors.
  /// unsupported for a trained embedding (modules_to_save embed_tokens).
  TrainableAdapter(std::shared_ptr<Model> model, LoraConfig config, const std::map<std::string, Tensor>& tensors,
                   const std::string& source);

  const LoraFactors* factors(int layer, ProjKind kind) const override;
  const Tensor* head() const override { return head_.defined() ? &head_ : nullptr; }

  const LoraConfig& config() const { return config_; }
  const AdapterPlan& plan() const { return plan_; }
  /// The trained tensors (value and gradient, host f32), in plan order: A and B of each module, then saved modules.
  std::span<Param> params() { return params_; }
  std::span<const Param> params() const { return params_; }
  /// What a training pass accumulates into (on the backend).
  LoraGradients& gradients() { return grads_; }

  /// Zeroes the gradients, before a step's first micro-batch.
  void zero_grad();
  /// Brings the backend's gradients into params()[i].grad (nothing to do on the CPU, where they are one).
  void gather_grads();
  /// Brings params()[i].value to the backend's factors after an optimizer step (nothing to do on the CPU).
  void refresh();
  /// Copies of the values by PEFT key: an adapter file's content.
  std::map<std::string, Tensor> tensors() const;

 private:
  std::shared_ptr<Model> model_;
  LoraConfig config_;
  AdapterPlan plan_;
  std::vector<Param> params_;
  // Per params_ entry: the backend tensor the pass reads (a factor or the head) and its gradient.
  std::vector<Tensor*> device_values_;
  std::vector<Tensor*> device_grads_;
  std::vector<LoraFactors> slots_;  // [layers · kProjKinds]
  Tensor head_;
  LoraGradients grads_;
  bool shared_ = false;  // the backend reads params_ directly (CPU f32)
};

/// A new adapter for `config`, initialised as PEFT does: A Kaiming-uniform (U(−1/√in, 1/√in), torch's
/// kaiming_uniform_ with a = √5), B zero, and saved modules copies of the model's (head_weight); drawn from `seed`
/// (wick's generator: the same numbers on every platform, not torch's).
std::map<std::string, Tensor> init_adapter_tensors(const AdapterPlan& plan, const Tensor& head_weight, uint64_t seed);

}  // namespace wick
