// Model configuration read from a Hugging Face model directory (config.json, generation_config.json).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "wick/dtype.h"

namespace wick {

enum class ModelHead {
  causal_lm,                ///< Qwen2ForCausalLM: lm_head (or tied embeddings) over every position
  sequence_classification,  ///< Qwen2ForSequenceClassification: `score` at each row's last token
  none,                     ///< Qwen2Model, or a model loaded for its hidden states only (an embedder's body)
};

/// The architecture hyper-parameters of a Qwen2 model. Both transformers v4 (`rope_theta`,
/// `torch_dtype`) and v5 (`rope_parameters.rope_theta`, `dtype`) spellings are accepted.
struct ModelConfig {
  ModelHead head = ModelHead::causal_lm;
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;  ///< hidden_size / num_heads unless config.json gives head_dim
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  bool tie_word_embeddings = false;
  int64_t num_labels = 0;  ///< sequence classification only
  std::optional<int32_t> pad_token_id;
  std::optional<int32_t> bos_token_id;
  std::vector<int32_t> eos_token_ids;
  std::optional<DType> dtype;  ///< the dtype the files declare, if any

  /// Parses and validates a config.json; `source` names the file in error messages.
  static ModelConfig parse(const std::string& json_text, const std::string& source);
  /// Reads `dir/config.json`.
  static ModelConfig load(const std::filesystem::path& dir);
  /// The shape of a Qwen2.5-0.5B / Qwen2.5-7B / tiny test model (for random models and benchmarks).
  static ModelConfig preset(const std::string& name);

  int64_t q_dim() const { return num_heads * head_dim; }
  int64_t kv_dim() const { return num_kv_heads * head_dim; }
  /// Number of parameters the weights hold.
  int64_t parameter_count() const;
  /// config.json text in the transformers-v5 spelling (what `wick random-model` writes).
  std::string to_json() const;
};

/// Defaults from generation_config.json (absent file: every field empty).
struct GenerationDefaults {
  std::vector<int32_t> eos_token_ids;
  std::optional<int32_t> bos_token_id;
  std::optional<int32_t> pad_token_id;
  std::optional<bool> do_sample;
  std::optional<float> temperature;
  std::optional<float> top_p;
  std::optional<int32_t> top_k;
  std::optional<float> min_p;
  std::optional<float> repetition_penalty;
  std::optional<int32_t> max_new_tokens;

  static GenerationDefaults parse(const std::string& json_text, const std::string& source);
  /// Reads `dir/generation_config.json` when it exists.
  static GenerationDefaults load(const std::filesystem::path& dir);
};

}  // namespace wick
