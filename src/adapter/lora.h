// Private pieces of LoRA adapters: the plan a PEFT config implies for a Qwen2 model, PEFT key names, and the
// adapter's storage (the LoraSource the forward pass reads).
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "model/linear.h"
#include "wick/adapter.h"
#include "wick/config.h"

namespace wick {

/// One projection that carries LoRA: ΔW = scale · B·A.
struct LoraModulePlan {
  int layer = 0;
  ProjKind kind = ProjKind::q;
  std::string key;  // "model.layers.0.self_attn.q_proj"
  int64_t rank = 0;
  double alpha = 0;
  float scale = 0;
  Shape a_shape;  // [rank, in]
  Shape b_shape;  // [out, rank]
};

/// A module PEFT stores whole (modules_to_save).
struct SavedModulePlan {
  enum class Slot { head, embedding };
  Slot slot = Slot::head;
  std::string name;  // "score", "lm_head", "embed_tokens"
  std::string key;   // "score", "lm_head", "model.embed_tokens"
  Shape shape;
};

struct AdapterPlan {
  std::vector<LoraModulePlan> lora;  // in layer, then projection order
  std::vector<SavedModulePlan> saved;
};

/// What `config` implies for a model shaped like `model`. bad_input for a target or pattern that names
/// nothing in a Qwen2 model, unsupported for LoRA on the embedding or the head. `source` names the config.
AdapterPlan plan_adapter(const LoraConfig& config, const ModelConfig& model, const std::string& source);

/// The key PEFT saves a module's tensor under: "base_model.model." + module_key + suffix.
std::string peft_key(const std::string& module_key, std::string_view suffix);
inline std::string lora_a_key(const LoraModulePlan& m) { return peft_key(m.key, ".lora_A.weight"); }
inline std::string lora_b_key(const LoraModulePlan& m) { return peft_key(m.key, ".lora_B.weight"); }
inline std::string saved_key(const SavedModulePlan& m) { return peft_key(m.key, ".weight"); }

/// Whether an adapter checked against a model of config `a` fits one of config `b`.
bool same_shape(const ModelConfig& a, const ModelConfig& b);

/// What validation needs to know of a stored tensor before reading it.
struct TensorMeta {
  Shape shape;
  std::string dtype_name;
  bool usable = false;  // f32 / bf16 / f16 on the CPU
};

/// An adapter to build: its config, the tensors on offer, and how to read one of them (by PEFT key).
struct AdapterSpec {
  std::string name;
  std::filesystem::path dir;  // where it was read from, or empty
  std::string source;         // names it in errors
  LoraConfig config;
  std::map<std::string, TensorMeta> found;
  std::function<Tensor(const std::string&)> fetch;
};

/// Plans, validates whole against `model` (nothing is uploaded unless every tensor fits), then uploads.
std::shared_ptr<const LoraAdapter> build_adapter(const AdapterSpec& spec, const Model& model);

/// A loaded adapter: device factors the forward pass reads, and CPU f32 copies for save() and merging.
struct LoraAdapter::Impl final : LoraSource {
  const LoraAdapter* owner = nullptr;
  AdapterInfo info;
  LoraConfig config;
  AdapterPlan plan;
  ModelConfig base;  // the shape it was checked against
  Device device = Device::cpu;
  std::vector<LoraFactors> slots;      // [layer · kProjKinds + kind]; a.defined() where there are factors
  std::map<std::string, Tensor> host;  // PEFT key -> CPU f32 tensor
  Tensor head_override;                // device [labels or vocab, hidden], or undefined
  Tensor embed_override;               // device [vocab, hidden], or undefined

  const LoraFactors* factors(int layer, ProjKind kind) const override;
  const Tensor* head() const override { return head_override.defined() ? &head_override : nullptr; }
  const Tensor* embedding() const override { return embed_override.defined() ? &embed_override : nullptr; }
};

}  // namespace wick
