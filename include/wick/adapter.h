// LoRA adapters in PEFT's format: reading, validating against a base model, writing, and a registry of
// resident adapters to hot-swap between. The model's side (apply / remove / merge) is in wick/model.h.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "wick/tensor.h"

namespace wick {

class Model;
class LoraSource;

/// The fields of PEFT's adapter_config.json (peft_type "LORA") that decide what an adapter computes.
/// Module keys are the base model's module names, e.g. "model.layers.3.mlp.down_proj".
struct LoraConfig {
  int64_t r = 8;             ///< rank (≥ 1)
  double lora_alpha = 8.0;   ///< scale = lora_alpha / r, or lora_alpha / √r with use_rslora
  bool use_rslora = false;
  double lora_dropout = 0.0;  ///< training only: dropout on the LoRA path's input, in [0, 1)
  /// Which projections carry LoRA: module names matched as PEFT does (the whole key, or its end after a
  /// '.'); a Python regex (full match on the key) in target_regex; or all_linear (the seven projections).
  std::vector<std::string> target_modules;
  std::string target_regex;
  bool all_linear = false;
  std::vector<std::string> exclude_modules;  ///< same matching as target_modules
  std::string exclude_regex;
  /// Per-module rank / alpha: the first key (in file order) that matches the end of the module key as a regex.
  std::vector<std::pair<std::string, int64_t>> rank_pattern;
  std::vector<std::pair<std::string, double>> alpha_pattern;
  std::vector<int64_t> layers_to_transform;  ///< empty: every layer
  /// Modules stored whole rather than as factors: "score", "lm_head", "embed_tokens" ("classifier",
  /// which PEFT adds for sequence classification, matches nothing in Qwen2 and is ignored).
  std::vector<std::string> modules_to_save;
  std::string task_type;                ///< "CAUSAL_LM", "SEQ_CLS" or empty
  std::string base_model_name_or_path;  ///< informational; named in error hints

  /// Parses adapter_config.json text. Fails with unsupported for other PEFT types, DoRA, LoRA biases,
  /// layer replication and other variants wick does not compute; with bad_input for a rank below 1,
  /// a non-finite alpha or a malformed field; corrupt for text that is not JSON. `source` names the file.
  static LoraConfig parse(const std::string& json_text, const std::string& source);
  /// adapter_config.json text that PEFT 0.21 loads.
  std::string to_json() const;
};

/// What an adapter is, for listings and current_adapter().
struct AdapterInfo {
  std::string name;
  std::filesystem::path source;        ///< directory it was read from; empty when made in memory
  int64_t rank = 0;                    ///< config r
  int64_t max_rank = 0;                ///< largest rank over modules (rank_pattern)
  double alpha = 0;                    ///< config lora_alpha
  bool use_rslora = false;
  std::vector<std::string> targets;    ///< projection names carrying LoRA, e.g. {"q_proj", "v_proj"}
  int64_t lora_modules = 0;            ///< (layer, projection) pairs with factors
  std::vector<std::string> saved_modules;  ///< modules replaced whole: "score", "lm_head", "embed_tokens"
  int64_t parameter_count = 0;         ///< elements of every factor and saved module
  int64_t bytes = 0;                   ///< device bytes those take in the model's compute dtype
};

/// A LoRA adapter validated against a base model and uploaded to its backend. Immutable once made and
/// shared by std::shared_ptr<const LoraAdapter>: a request keeps the adapter it started with, whatever is
/// swapped meanwhile. It works with any model of the same shape and device as the one it was made for.
class LoraAdapter {
 public:
  /// Reads a PEFT directory (adapter_config.json + adapter_model.safetensors) and checks every tensor
  /// against `model` before anything is uploaded: all missing, unexpected, misshaped or mistyped tensors
  /// are listed in one error (bad_input) with expected and found shapes. not_found for a missing file;
  /// unsupported for adapter types wick does not compute. `name` defaults to the directory's name.
  static std::shared_ptr<const LoraAdapter> load(const std::filesystem::path& dir, const Model& model,
                                                 std::string name = "");
  /// The same from tensors in memory, keyed as in adapter_model.safetensors
  /// ("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"); CPU, f32 / bf16 / f16.
  static std::shared_ptr<const LoraAdapter> from_tensors(std::string name, const LoraConfig& config,
                                                         const std::map<std::string, Tensor>& tensors,
                                                         const Model& model);
  /// A random adapter with every factor non-zero (A ~ variance 1/in, B ~ variance 0.04/r; saved modules
  /// ~ variance 1/in), for tests, demos and benchmarks. Same seed, same adapter.
  static std::shared_ptr<const LoraAdapter> random(std::string name, const LoraConfig& config, const Model& model,
                                                   uint64_t seed);

  ~LoraAdapter();
  LoraAdapter(const LoraAdapter&) = delete;
  LoraAdapter& operator=(const LoraAdapter&) = delete;

  const AdapterInfo& info() const;
  const LoraConfig& config() const;
  /// Writes adapter_config.json and adapter_model.safetensors (f32, PEFT's key names) into `dir`, created
  /// if needed: a directory that PeftModel.from_pretrained loads.
  void save(const std::filesystem::path& dir) const;
  /// The factors as the forward pass reads them (pass to Model::forward / Model::logits).
  const LoraSource& source() const;
  /// source() of `adapter`, owning it: what a batch request or an engine sequence holds (nullptr for nullptr).
  static std::shared_ptr<const LoraSource> shared_source(const std::shared_ptr<const LoraAdapter>& adapter) {
    return adapter ? std::shared_ptr<const LoraSource>(adapter, &adapter->source()) : nullptr;
  }
  /// bad_input, naming both shapes, unless this adapter was checked against a model of `model`'s shape and
  /// uploaded to its device (an adapter works with any such model).
  void check_fits(const Model& model) const;

  struct Impl;  // src/adapter/lora.h
  /// wick's own: adapters come from load, from_tensors or random.
  explicit LoraAdapter(std::unique_ptr<Impl> impl);

 private:
  std::unique_ptr<Impl> impl_;
};

/// Adapters resident at once for one model, by name, and which one is in effect. Thread-safe: any thread
/// may load, activate or unload while others generate; a generation in flight keeps its adapter, since
/// the model hands each request a shared snapshot.
class AdapterRegistry {
 public:
  explicit AdapterRegistry(std::shared_ptr<Model> model);

  /// Reads and validates an adapter directory (outside the lock) and adds it under `name` (default: the
  /// directory's name). bad_input when the name is taken; the registry and model are unchanged on failure.
  std::shared_ptr<const LoraAdapter> load(const std::filesystem::path& dir, std::string name = "");
  /// Adds an adapter made in memory under its info().name; bad_input when the name is taken or the
  /// adapter was made for a model of another shape.
  void add(std::shared_ptr<const LoraAdapter> adapter);
  /// Adds an adapter under its info().name, or replaces the version held under that name: a new version of an
  /// adapter (a training run publishing). When the old version was in effect, the new one is put in effect in
  /// the same step. Requests in flight keep the version they started with. Returns the version replaced (or
  /// nullptr). bad_input when the adapter has no name or was made for a model of another shape.
  std::shared_ptr<const LoraAdapter> put(std::shared_ptr<const LoraAdapter> adapter);
  /// Drops `name` (deactivating it first if it is in effect); false when absent. Requests holding it
  /// finish with it; its memory goes when the last of them does.
  bool unload(const std::string& name);
  /// Puts `name` in effect for new requests: a pointer exchange. not_found when absent.
  void activate(const std::string& name);
  /// Back to the base model for new requests.
  void deactivate();
  /// The adapter in effect's name, or "" for the base model.
  std::string active() const;
  /// Every resident adapter, sorted by name.
  std::vector<AdapterInfo> list() const;
  /// nullptr when absent.
  std::shared_ptr<const LoraAdapter> get(const std::string& name) const;

 private:
  std::shared_ptr<Model> model_;
  mutable std::mutex mutex_;  // guards adapters_ and the model's active adapter against concurrent changes
  std::map<std::string, std::shared_ptr<const LoraAdapter>> adapters_;
};

}  // namespace wick
